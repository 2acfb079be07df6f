// Attributes (outer and inner) and visibility are preserved; the option
// `crate` accepts a renamed runtime path.
#![deny(unused_mut, unused_variables)]

use fiber_runtime as rt;

#[allow(unused_mut)]
#[rt::main(crate = "rt", flavor = "current_thread")]
pub async fn main() {
    #![allow(unused_variables)]
    let mut never_mutated = 1;
    let unused = ();
    assert_eq!(never_mutated, 1);
}
