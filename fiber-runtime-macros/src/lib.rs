//! Attribute macros for [`fiber-runtime`](https://docs.rs/fiber-runtime).
//!
//! This crate provides two attribute macros, re-exported by the runtime crate
//! as `fiber_runtime::main` and `fiber_runtime::test`:
//!
//! * [`macro@main`] turns an `async fn main()` into a regular `fn main()` that
//!   builds a runtime and blocks on the original body.
//! * [`macro@test`] turns an `async fn` into a regular `#[test]` function that
//!   runs its body on a freshly built runtime.
//!
//! Both macros accept the same options:
//!
//! | option           | value                                   | default                                          |
//! |------------------|-----------------------------------------|--------------------------------------------------|
//! | `flavor`         | `"multi_thread"` or `"current_thread"`  | `multi_thread` for `main`, `current_thread` for `test` |
//! | `worker_threads` | integer literal greater than `0`        | the runtime's own default                        |
//! | `crate`          | path to the runtime crate, e.g. `"::my_rt"` | `::fiber_runtime`                            |
//!
//! `worker_threads` is only meaningful for the `multi_thread` flavor; using it
//! with `flavor = "current_thread"` (or with the default flavor of
//! `#[fiber_runtime::test]`) is a compile error.
//!
//! Do not depend on this crate directly: use the macros through the
//! `fiber_runtime` crate, which re-exports them.

#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, Ident, ItemFn, Lit, Meta, MetaNameValue, Path, Token};

/// Runs an `async fn` as the program's entry point on a fiber-runtime
/// runtime.
///
/// The annotated function must be `async` and take no parameters. The macro
/// rewrites it into a synchronous function with the same name, visibility,
/// attributes and return type, whose body builds a runtime and blocks on the
/// original body; `#[fiber_runtime::main] async fn main() { /* body */ }`
/// becomes:
///
/// ```
/// fn main() {
///     let body = async move { /* original body */ };
///     ::fiber_runtime::Builder::new_multi_thread()
///         .build()
///         .expect("failed to build the fiber-runtime runtime")
///         .block_on(body)
/// }
/// ```
///
/// Any return type is allowed: the value produced by the `async` body is
/// returned from the generated function, so `main` may return, for example,
/// `Result<(), Box<dyn std::error::Error>>`.
///
/// The macro is not restricted to `main`; it may be put on any parameterless
/// `async fn`, which then becomes a blocking function that runs its body on a
/// new runtime each time it is called.
///
/// # Options
///
/// * `flavor = "multi_thread"` (the default) runs the body on a work-stealing
///   thread pool; `flavor = "current_thread"` runs everything on the calling
///   thread.
/// * `worker_threads = N` sets the number of worker threads of a
///   `multi_thread` runtime. `N` must be an integer literal greater than zero.
///   It cannot be combined with `flavor = "current_thread"`.
/// * `crate = "path"` names the path through which the runtime crate is
///   reached, for when it is renamed or re-exported. The default is
///   `::fiber_runtime`.
///
/// # Examples
///
/// The default multi-threaded runtime:
///
/// ```
/// #[fiber_runtime::main]
/// async fn main() {
///     let handle = fiber_runtime::spawn(async { 6 * 7 });
///     let answer = handle.await.expect("the task panicked");
///     println!("the answer is {answer}");
/// }
/// ```
///
/// Choosing the flavor and the number of worker threads, and returning a
/// `Result` from `main`:
///
/// ```
/// use std::error::Error;
///
/// #[fiber_runtime::main(flavor = "multi_thread", worker_threads = 4)]
/// async fn main() -> Result<(), Box<dyn Error>> {
///     let handles: Vec<_> = (0..8u64)
///         .map(|i| fiber_runtime::spawn(async move { i * i }))
///         .collect();
///     let mut sum = 0;
///     for handle in handles {
///         sum += handle.await?;
///     }
///     assert_eq!(sum, 140);
///     Ok(())
/// }
/// ```
///
/// A single-threaded runtime:
///
/// ```
/// #[fiber_runtime::main(flavor = "current_thread")]
/// async fn main() {
///     let value = fiber_runtime::spawn(async { "hello" }).await.unwrap();
///     assert_eq!(value, "hello");
/// }
/// ```
// The first example intentionally shows a bare `fn main`: it is the expansion.
#[allow(clippy::needless_doctest_main)]
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Main, args.into(), item.into()).into()
}

/// Runs an `async fn` as a test on a fresh fiber-runtime runtime.
///
/// The annotated function must be `async` and take no parameters. The macro
/// rewrites it into a synchronous `#[test]` function that builds a new
/// runtime and blocks on the original body, so every test gets its own
/// runtime. Other attributes, such as `#[should_panic]` or `#[ignore]`, are
/// kept on the generated function. Do not add `#[test]` yourself: the macro
/// already does.
///
/// The test may return any type that `#[test]` accepts, for example
/// `Result<(), String>`.
///
/// # Options
///
/// * `flavor = "current_thread"` (the default for tests) runs everything on
///   the test's thread; `flavor = "multi_thread"` uses a work-stealing thread
///   pool.
/// * `worker_threads = N` sets the number of worker threads of a
///   `multi_thread` runtime. `N` must be an integer literal greater than zero.
///   Because the default flavor of tests is `current_thread`, it has to be
///   combined with `flavor = "multi_thread"`.
/// * `crate = "path"` names the path through which the runtime crate is
///   reached, for when it is renamed or re-exported. The default is
///   `::fiber_runtime`.
///
/// # Examples
///
/// ```no_run
/// # fn main() {}
/// #[fiber_runtime::test]
/// async fn spawned_task_returns_its_value() {
///     let handle = fiber_runtime::spawn(async { 1 + 2 });
///     assert_eq!(handle.await.unwrap(), 3);
/// }
///
/// #[fiber_runtime::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn many_tasks() -> Result<(), fiber_runtime::JoinError> {
///     let handles: Vec<_> = (0..100u32)
///         .map(|i| fiber_runtime::spawn(async move { i }))
///         .collect();
///     let mut sum = 0;
///     for handle in handles {
///         sum += handle.await?;
///     }
///     assert_eq!(sum, 4950);
///     Ok(())
/// }
///
/// #[fiber_runtime::test]
/// #[should_panic(expected = "boom")]
/// async fn panics() {
///     panic!("boom");
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Test, args.into(), item.into()).into()
}

/// Which of the two macros is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn macro_name(self) -> &'static str {
        match self {
            Kind::Main => "fiber_runtime::main",
            Kind::Test => "fiber_runtime::test",
        }
    }

    fn default_flavor(self) -> Flavor {
        match self {
            Kind::Main => Flavor::MultiThread,
            Kind::Test => Flavor::CurrentThread,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MultiThread,
    CurrentThread,
}

const VALID_OPTIONS: &str = "`flavor`, `worker_threads` and `crate`";
const VALID_FLAVORS: &str = "`multi_thread` and `current_thread`";

/// The validated configuration used to generate the runtime set-up code.
struct Config {
    flavor: Flavor,
    worker_threads: Option<usize>,
    crate_path: Option<Path>,
}

/// Options as written by the user, before cross-option validation.
#[derive(Default)]
struct RawOptions {
    flavor: Option<Flavor>,
    /// The value, and the `worker_threads = N` tokens for error reporting.
    worker_threads: Option<(usize, TokenStream2)>,
    crate_path: Option<Path>,
}

/// Accumulates errors so that the user sees all of them at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }
}

fn expand(kind: Kind, args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let input: ItemFn = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(error) => {
            // Not a function we can understand: report the error and give the
            // tokens back unchanged so that rustc's own diagnostics still work.
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            return tokens;
        }
    };

    let mut errors = Errors::default();

    if input.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            input.sig.fn_token,
            "the `async` keyword is missing from the function declaration",
        ));
    }

    let has_params = !input.sig.inputs.is_empty();
    if has_params {
        let msg = match kind {
            Kind::Main => format!(
                "functions annotated with `#[{}]` cannot take parameters; `main` takes none",
                kind.macro_name()
            ),
            Kind::Test => format!(
                "functions annotated with `#[{}]` cannot take parameters; tests take none",
                kind.macro_name()
            ),
        };
        errors.push(syn::Error::new_spanned(&input.sig.inputs, msg));
    }

    let duplicate_test_attr = kind == Kind::Test && input.attrs.iter().any(is_test_attribute);
    if duplicate_test_attr {
        for attr in input.attrs.iter().filter(|attr| is_test_attribute(attr)) {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[fiber_runtime::test]` already generates `#[test]`; remove this attribute",
            ));
        }
    }

    let options = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => parse_options(kind, metas, &mut errors),
        Err(error) => {
            errors.push(error);
            RawOptions::default()
        }
    };
    let config = build_config(kind, options, &mut errors);

    match errors.0 {
        None => generate(kind, input, &config, GenerateMode::Normal),
        Some(error) => {
            // Emit the error first, followed by a best-effort expansion of the
            // function. Keeping the function (with `async` removed and its
            // body wrapped in the runtime) means rustc does not also complain
            // about e.g. a missing `main` function or `.await` outside of an
            // async context.
            let mode = GenerateMode::Recovery {
                // Only a function called `main` has its signature checked by
                // rustc; other functions keep their parameters so that their
                // callers do not get spurious errors.
                strip_params: has_params && input.sig.ident == "main",
                add_test_attr: !has_params && !duplicate_test_attr,
            };
            let mut tokens = error.to_compile_error();
            tokens.extend(generate(kind, input, &config, mode));
            tokens
        }
    }
}

fn parse_options(
    kind: Kind,
    metas: Punctuated<Meta, Token![,]>,
    errors: &mut Errors,
) -> RawOptions {
    let mut options = RawOptions::default();
    let mut seen_crate = false;

    for meta in metas {
        let name_value = match meta {
            Meta::NameValue(name_value) => name_value,
            Meta::Path(path) => {
                errors.push(option_without_value(kind, &path));
                continue;
            }
            Meta::List(list) => {
                let name = path_to_string(&list.path);
                let msg = if is_known_option(&name) {
                    format!("expected `{name} = ...`, found `{name}(...)`")
                } else {
                    unknown_option_message(&name)
                };
                errors.push(syn::Error::new_spanned(&list.path, msg));
                continue;
            }
        };

        let name = path_to_string(&name_value.path);
        let result = match name.as_str() {
            "flavor" if options.flavor.is_some() => Err(duplicate(&name_value)),
            "flavor" => parse_flavor(&name_value.value).map(|flavor| options.flavor = Some(flavor)),
            "worker_threads" if options.worker_threads.is_some() => Err(duplicate(&name_value)),
            "worker_threads" => parse_worker_threads(&name_value.value)
                .map(|n| options.worker_threads = Some((n, name_value.to_token_stream()))),
            "crate" if seen_crate => Err(duplicate(&name_value)),
            "crate" => {
                seen_crate = true;
                parse_crate_path(&name_value.value).map(|path| options.crate_path = Some(path))
            }
            _ => Err(syn::Error::new_spanned(
                &name_value.path,
                unknown_option_message(&name),
            )),
        };
        if let Err(error) = result {
            errors.push(error);
        }
    }

    options
}

fn build_config(kind: Kind, options: RawOptions, errors: &mut Errors) -> Config {
    let flavor = options.flavor.unwrap_or(kind.default_flavor());

    let worker_threads = match (flavor, options.worker_threads) {
        (Flavor::CurrentThread, Some((_, tokens))) => {
            let msg = if options.flavor.is_some() {
                "`worker_threads` cannot be used with `flavor = \"current_thread\"`, \
                 which always runs on a single thread; remove `worker_threads` or use \
                 `flavor = \"multi_thread\"`"
                    .to_owned()
            } else {
                format!(
                    "`worker_threads` requires the `multi_thread` flavor, but the default \
                     flavor of `#[{name}]` is `current_thread`; use \
                     `#[{name}(flavor = \"multi_thread\", worker_threads = ...)]`",
                    name = kind.macro_name()
                )
            };
            errors.push(syn::Error::new_spanned(tokens, msg));
            None
        }
        (Flavor::CurrentThread, None) => None,
        (Flavor::MultiThread, worker_threads) => worker_threads.map(|(n, _)| n),
    };

    Config {
        flavor,
        worker_threads,
        crate_path: options.crate_path,
    }
}

fn path_to_string(path: &Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => path.to_token_stream().to_string().replace(' ', ""),
    }
}

fn is_known_option(name: &str) -> bool {
    matches!(name, "flavor" | "worker_threads" | "crate")
}

fn unknown_option_message(name: &str) -> String {
    format!("unknown option `{name}`; the valid options are {VALID_OPTIONS}")
}

fn option_without_value(kind: Kind, path: &Path) -> syn::Error {
    let name = path_to_string(path);
    let msg = match name.as_str() {
        "multi_thread" | "current_thread" => format!(
            "the runtime flavor is set with `#[{}(flavor = \"{name}\")]`",
            kind.macro_name()
        ),
        "flavor" => "`flavor` requires a value, e.g. `flavor = \"current_thread\"`".to_owned(),
        "worker_threads" => {
            "`worker_threads` requires a value, e.g. `worker_threads = 4`".to_owned()
        }
        "crate" => "`crate` requires a value, e.g. `crate = \"::fiber_runtime\"`".to_owned(),
        _ => unknown_option_message(&name),
    };
    syn::Error::new_spanned(path, msg)
}

fn duplicate(name_value: &MetaNameValue) -> syn::Error {
    syn::Error::new_spanned(
        name_value,
        format!(
            "the `{}` option is set more than once",
            path_to_string(&name_value.path)
        ),
    )
}

/// Strips invisible groups, which appear when the attribute is produced by a
/// `macro_rules!` macro.
fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => peel(&group.expr),
        other => other,
    }
}

fn parse_flavor(value: &Expr) -> syn::Result<Flavor> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.value().as_str() {
            "multi_thread" => Ok(Flavor::MultiThread),
            "current_thread" => Ok(Flavor::CurrentThread),
            other => Err(syn::Error::new_spanned(
                lit,
                format!("unknown runtime flavor `{other}`; the valid flavors are {VALID_FLAVORS}"),
            )),
        },
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "`flavor` expects a string literal; the valid flavors are {VALID_FLAVORS}, \
                 e.g. `flavor = \"current_thread\"`"
            ),
        )),
    }
}

fn parse_worker_threads(value: &Expr) -> syn::Result<usize> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => match lit.base10_parse::<usize>() {
            Ok(0) => Err(syn::Error::new_spanned(
                lit,
                "`worker_threads` must be greater than 0",
            )),
            Ok(n) => Ok(n),
            Err(error) => Err(syn::Error::new_spanned(
                lit,
                format!("`worker_threads` is not a valid thread count: {error}"),
            )),
        },
        _ => Err(syn::Error::new_spanned(
            value,
            "`worker_threads` expects an integer literal greater than 0, e.g. `worker_threads = 4`",
        )),
    }
}

fn parse_crate_path(value: &Expr) -> syn::Result<Path> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit.parse::<Path>().map_err(|_| {
            syn::Error::new_spanned(
                lit,
                format!(
                    "`crate` expects a path such as `\"::fiber_runtime\"`, found \"{}\"",
                    lit.value()
                ),
            )
        }),
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => Ok(path.path.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`crate` expects a path as a string literal, e.g. `crate = \"::fiber_runtime\"`",
        )),
    }
}

/// Recognises `#[test]`, `#[core::prelude::*::test]` and
/// `#[std::prelude::*::test]` (with or without a leading `::`).
fn is_test_attribute(attr: &Attribute) -> bool {
    let Meta::Path(path) = &attr.meta else {
        return false;
    };
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    if path
        .segments
        .iter()
        .any(|segment| !segment.arguments.is_none())
    {
        return false;
    }
    match segments.as_slice() {
        [single] => path.leading_colon.is_none() && single == "test",
        [root, prelude, _, test] => {
            (root == "core" || root == "std") && prelude == "prelude" && test == "test"
        }
        _ => false,
    }
}

#[derive(Clone, Copy)]
enum GenerateMode {
    /// The input was valid.
    Normal,
    /// An error was reported; produce something that keeps follow-up errors
    /// to a minimum.
    Recovery {
        /// The function had parameters, which are turned into local bindings
        /// of a diverging expression so that the body still type-checks.
        strip_params: bool,
        /// Whether to add `#[test]` (only meaningful for `Kind::Test`).
        add_test_attr: bool,
    },
}

fn generate(kind: Kind, input: ItemFn, config: &Config, mode: GenerateMode) -> TokenStream2 {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = input;

    // Inner attributes (`#![...]` at the top of the body) cannot stay inside
    // the `async` block; lift them onto the generated function instead.
    let attrs = attrs.into_iter().map(|mut attr| {
        attr.style = syn::AttrStyle::Outer;
        attr
    });

    sig.asyncness = None;

    // Use the span of the end of the body for the generated runtime code, so
    // that a type mismatch between the body's value and the declared return
    // type is reported at the user's code rather than at the attribute.
    let tail_span = block
        .stmts
        .last()
        .and_then(|stmt| stmt.to_token_stream().into_iter().last())
        .map_or_else(Span::call_site, |token| token.span());
    let rt_span = Span::call_site().located_at(tail_span);

    let crate_path = config.crate_path.as_ref().map_or_else(
        || quote_spanned!(rt_span=> ::fiber_runtime),
        ToTokens::to_token_stream,
    );
    let constructor = match config.flavor {
        Flavor::MultiThread => Ident::new("new_multi_thread", rt_span),
        Flavor::CurrentThread => Ident::new("new_current_thread", rt_span),
    };
    let worker_threads = config
        .worker_threads
        .map(|n| quote_spanned!(rt_span=> .worker_threads(#n)));

    let body_ident = Ident::new("body", Span::mixed_site());

    let mut prelude = TokenStream2::new();
    let mut extra_attrs = TokenStream2::new();
    let mut add_test_attr = kind == Kind::Test;

    if let GenerateMode::Recovery {
        strip_params,
        add_test_attr: add,
    } = mode
    {
        add_test_attr &= add;
        extra_attrs.extend(quote!(#[allow(dead_code, unreachable_code, unused_variables)]));
        if strip_params {
            for param in std::mem::take(&mut sig.inputs) {
                if let syn::FnArg::Typed(pat_type) = param {
                    let pat = &pat_type.pat;
                    let ty = &pat_type.ty;
                    prelude.extend(quote!(let #pat: #ty = ::core::unreachable!();));
                }
            }
        }
    }

    if add_test_attr {
        extra_attrs.extend(quote!(#[::core::prelude::v1::test]));
    }

    let run = quote_spanned! {rt_span=>
        #crate_path::Builder::#constructor()
            #worker_threads
            .build()
            .expect("failed to build the fiber-runtime runtime")
            .block_on(#body_ident)
    };

    let stmts = &block.stmts;
    let async_body = quote_spanned!(block.brace_token.span.join()=> async move { #(#stmts)* });

    quote! {
        #(#attrs)*
        #extra_attrs
        #vis #sig {
            #prelude
            let #body_ident = #async_body;
            #run
        }
    }
}
