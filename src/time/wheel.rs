//! The timer wheel: 6 levels of 64 slots, 1 ms per level-0 slot.
//!
//! Level `l` slots span `64^l` ms, so the six levels together span one
//! *epoch* of `2^36` ms (2.2 years). A timer sits at the level where its
//! deadline first differs from the wheel's current time in a 6-bit digit,
//! so every timer at a lower level expires before any timer at a higher
//! one, and cascades down as time passes.
//!
//! A deadline in a later epoch than the wheel's current time (more than
//! 2.2 years ahead, or nearer but past the next epoch boundary) has no
//! slot: it waits in the *overflow* list, which is refiled when the wheel
//! reaches the start of the epoch of the earliest deadline in it. (Filing
//! such a deadline in the last level instead would put it in that level's
//! current slot, which is due at once and would refile it there forever.)
//!
//! Entries live in a slab (`Vec<Entry>`) and slots are doubly linked lists
//! of slab indices: registering a timer allocates nothing once the slab
//! has grown to the peak number of pending timers, and cancelling one
//! unlinks it in O(1). A `Key` (index + generation) names an entry; the
//! generation makes a stale key (of a freed and reused entry) harmless.
//! An entry is freed when it fires (its key reads as fired from then on)
//! or when its owner removes it.

use std::task::Waker;

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// Ticks per epoch are `2^EPOCH_BITS`: the span of all levels together.
const EPOCH_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// `Entry::level` of an entry in the overflow list.
const OVERFLOW: u8 = LEVELS as u8;
const NIL: u32 = u32::MAX;

/// Names an entry: slab index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryState {
    Free,
    /// In a slot list.
    Waiting,
    /// Expired while not in a slot list: created or reset with a past
    /// deadline, or drained at shutdown (`advance` frees what it fires).
    Fired,
}

struct Entry {
    deadline: u64,
    waker: Option<Waker>,
    generation: u32,
    state: EntryState,
    level: u8,
    slot: u8,
    prev: u32,
    next: u32,
}

struct Level {
    /// Bit `i` set when slot `i` is non-empty.
    occupied: u64,
    heads: [u32; SLOTS],
}

pub(crate) struct Wheel {
    /// The tick up to which timers have been processed.
    elapsed: u64,
    levels: [Level; LEVELS],
    entries: Vec<Entry>,
    free_head: u32,
    /// Number of `Waiting` entries (in slots or in the overflow list).
    pending: usize,
    /// Waiting entries whose deadline lies in a later epoch (module doc),
    /// doubly linked like a slot.
    overflow_head: u32,
    /// No overflow entry has an earlier deadline (`u64::MAX`: none; may
    /// lag a removal, which only makes a refile look for nothing).
    overflow_min: u64,
}

/// What `poll_entry` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryPoll {
    Fired,
    Pending,
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            elapsed: 0,
            levels: std::array::from_fn(|_| Level {
                occupied: 0,
                heads: [NIL; SLOTS],
            }),
            entries: Vec::new(),
            free_head: NIL,
            pending: 0,
            overflow_head: NIL,
            overflow_min: u64::MAX,
        }
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Entries not free (waiting or fired), for tests.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.state != EntryState::Free)
            .count()
    }

    /// The tick up to which timers have fired: every timer due at or
    /// before it has fired (an entry's deadline is after it while it
    /// waits).
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Registers a timer for `deadline` (a tick). If the deadline has
    /// already passed, the entry is created fired.
    pub(crate) fn insert(&mut self, deadline: u64, waker: Waker) -> Key {
        let index = if self.free_head != NIL {
            let i = self.free_head;
            self.free_head = self.entries[i as usize].next;
            i
        } else {
            assert!(
                self.entries.len() < NIL as usize,
                "fiber-runtime: too many timers"
            );
            self.entries.push(Entry {
                deadline: 0,
                waker: None,
                generation: 0,
                state: EntryState::Free,
                level: 0,
                slot: 0,
                prev: NIL,
                next: NIL,
            });
            (self.entries.len() - 1) as u32
        };
        let e = &mut self.entries[index as usize];
        e.generation = e.generation.wrapping_add(1);
        e.deadline = deadline;
        e.waker = Some(waker);
        let key = Key {
            index,
            generation: e.generation,
        };
        if deadline <= self.elapsed {
            e.state = EntryState::Fired;
        } else {
            self.link(index);
        }
        key
    }

    fn entry(&self, key: Key) -> Option<&Entry> {
        self.entries
            .get(key.index as usize)
            .filter(|e| e.generation == key.generation && e.state != EntryState::Free)
    }

    /// Has the timer fired? If not, makes `waker` the one to wake.
    pub(crate) fn poll_entry(&mut self, key: Key, waker: &Waker) -> EntryPoll {
        let Some(e) = self.entry(key) else {
            // Already removed: treat as fired (the owner removed it).
            return EntryPoll::Fired;
        };
        if e.state == EntryState::Fired {
            return EntryPoll::Fired;
        }
        let e = &mut self.entries[key.index as usize];
        match &e.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => e.waker = Some(waker.clone()),
        }
        EntryPoll::Pending
    }

    /// Frees the entry (the `Sleep` is dropped or done); returns its waker
    /// so that it is dropped outside the lock.
    pub(crate) fn remove(&mut self, key: Key) -> Option<Waker> {
        self.entry(key)?;
        if self.entries[key.index as usize].state == EntryState::Waiting {
            self.unlink(key.index);
        }
        let free_head = self.free_head;
        let e = &mut self.entries[key.index as usize];
        e.state = EntryState::Free;
        e.next = free_head;
        self.free_head = key.index;
        e.waker.take()
    }

    /// Moves a timer to a new deadline (it becomes pending again).
    pub(crate) fn reset(&mut self, key: Key, deadline: u64) -> bool {
        if self.entry(key).is_none() {
            return false;
        }
        if self.entries[key.index as usize].state == EntryState::Waiting {
            self.unlink(key.index);
        }
        self.entries[key.index as usize].deadline = deadline;
        if deadline <= self.elapsed {
            self.entries[key.index as usize].state = EntryState::Fired;
        } else {
            self.link(key.index);
        }
        true
    }

    /// The tick at which the wheel next has work: the earliest pending
    /// timer, or the refiling of the overflow list if that comes first.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        let in_slots = (0..LEVELS).find_map(|l| self.level_next_expiration(l));
        match (in_slots, self.overflow_refile_tick()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the overflow list must be refiled: the start of the epoch of
    /// its earliest deadline.
    fn overflow_refile_tick(&self) -> Option<u64> {
        if self.overflow_head == NIL {
            return None;
        }
        Some((self.overflow_min >> EPOCH_BITS << EPOCH_BITS).max(self.elapsed))
    }

    /// Fires every timer due at or before `now`, handing each waker to
    /// `wake` (the caller wakes them after releasing its lock).
    pub(crate) fn advance(&mut self, now: u64, wake: &mut Vec<Waker>) {
        loop {
            let slot = self.next_slot();
            if let Some(refile) = self.overflow_refile_tick() {
                if refile <= now && slot.is_none_or(|(_, _, d)| refile <= d) {
                    // Every slot before the new epoch is done: enter it.
                    self.elapsed = refile;
                    self.refile_overflow(wake);
                    continue;
                }
            }
            let Some((level, slot, deadline)) = slot else {
                break;
            };
            if deadline > now {
                break;
            }
            // Take the slot's whole list, then refile or fire each entry.
            let cur = self.levels[level].heads[slot];
            self.levels[level].heads[slot] = NIL;
            self.levels[level].occupied &= !(1 << slot);
            self.elapsed = self.elapsed.max(deadline);
            // Those not due cascade to a lower level.
            self.fire_or_refile(cur, now, wake);
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// Takes every entry of a detached list (starting at `cur`): fires
    /// those due by `due`, handing their wakers to `wake`, and files the
    /// others again (relinking counts them again, in a slot or back in the
    /// overflow list).
    fn fire_or_refile(&mut self, mut cur: u32, due: u64, wake: &mut Vec<Waker>) {
        while cur != NIL {
            let e = &mut self.entries[cur as usize];
            let next = e.next;
            e.prev = NIL;
            e.next = NIL;
            self.pending -= 1;
            if e.deadline <= due {
                // Freed at once: its `Sleep` learns that it fired from
                // the wheel's time (`driver::Handle::poll`), and its key
                // goes stale.
                e.state = EntryState::Free;
                if let Some(w) = e.waker.take() {
                    wake.push(w);
                }
                e.next = self.free_head;
                self.free_head = cur;
            } else {
                self.link(cur);
            }
            cur = next;
        }
    }

    /// The earliest non-empty slot: (level, slot, its start tick).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        (0..LEVELS).find_map(|l| {
            self.level_next_slot(l)
                .map(|(slot, deadline)| (l, slot, deadline))
        })
    }

    fn level_next_expiration(&self, level: usize) -> Option<u64> {
        self.level_next_slot(level).map(|(_, d)| d)
    }

    /// The first occupied slot of `level` at or after the current time and
    /// the tick its span starts at.
    fn level_next_slot(&self, level: usize) -> Option<(usize, u64)> {
        let occupied = self.levels[level].occupied;
        if occupied == 0 {
            return None;
        }
        let shift = SLOT_BITS * level as u32;
        let slot_range = 1u64 << shift;
        let level_range = slot_range << SLOT_BITS;
        let now_slot = ((self.elapsed >> shift) as usize) % SLOTS;
        let zeros = occupied.rotate_right(now_slot as u32).trailing_zeros() as usize;
        let slot = (zeros + now_slot) % SLOTS;
        let level_start = self.elapsed & !(level_range - 1);
        let mut deadline = level_start + slot as u64 * slot_range;
        if deadline + slot_range <= self.elapsed {
            // The slot lies in the next rotation of this level.
            deadline += level_range;
        }
        Some((slot, deadline.max(self.elapsed)))
    }

    /// Moves the overflow entries whose deadline now lies in the wheel's
    /// epoch into their slots (the others stay, with a new minimum), and
    /// fires those due now (a deadline on the epoch's first tick).
    fn refile_overflow(&mut self, wake: &mut Vec<Waker>) {
        let cur = std::mem::replace(&mut self.overflow_head, NIL);
        self.overflow_min = u64::MAX;
        self.fire_or_refile(cur, self.elapsed, wake);
    }

    /// Files a waiting entry in the slot its deadline belongs to, or in
    /// the overflow list if it lies in a later epoch.
    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        debug_assert!(deadline > self.elapsed);
        let (level, slot) = if (self.elapsed ^ deadline) >> EPOCH_BITS == 0 {
            let level = level_for(self.elapsed, deadline);
            let slot = ((deadline >> (SLOT_BITS * level as u32)) as usize) % SLOTS;
            (level as u8, slot as u8)
        } else {
            self.overflow_min = self.overflow_min.min(deadline);
            (OVERFLOW, 0)
        };
        let head = *self.head_mut(level, slot);
        {
            let e = &mut self.entries[index as usize];
            e.state = EntryState::Waiting;
            e.level = level;
            e.slot = slot;
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        *self.head_mut(level, slot) = index;
        if level != OVERFLOW {
            self.levels[level as usize].occupied |= 1 << slot;
        }
        self.pending += 1;
    }

    /// The head of a slot's list, or of the overflow list.
    fn head_mut(&mut self, level: u8, slot: u8) -> &mut u32 {
        if level == OVERFLOW {
            &mut self.overflow_head
        } else {
            &mut self.levels[level as usize].heads[slot as usize]
        }
    }

    fn unlink(&mut self, index: u32) {
        let (level, slot, prev, next) = {
            let e = &self.entries[index as usize];
            (e.level, e.slot, e.prev, e.next)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            *self.head_mut(level, slot) = next;
            if next == NIL && level != OVERFLOW {
                self.levels[level as usize].occupied &= !(1 << slot);
            }
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[index as usize];
        e.prev = NIL;
        e.next = NIL;
        self.pending -= 1;
    }

    /// Fires every pending timer (shutdown), returning the wakers.
    pub(crate) fn drain(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for e in self.entries.iter_mut() {
            if e.state == EntryState::Waiting {
                e.state = EntryState::Fired;
                e.prev = NIL;
                e.next = NIL;
                wakers.extend(e.waker.take());
            }
        }
        for l in self.levels.iter_mut() {
            l.occupied = 0;
            l.heads = [NIL; SLOTS];
        }
        self.overflow_head = NIL;
        self.overflow_min = u64::MAX;
        self.pending = 0;
        wakers
    }
}

/// The level at which a deadline of `elapsed`'s epoch is filed: the
/// highest 6-bit digit in which it differs from `elapsed`.
fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    let level = significant / SLOT_BITS as usize;
    debug_assert!(level < LEVELS, "deadline outside the wheel's epoch");
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    fn fire(w: &mut Wheel, now: u64) -> usize {
        let mut v = Vec::new();
        w.advance(now, &mut v);
        v.len()
    }

    #[test]
    fn timers_fire_in_deadline_order_across_levels() {
        let mut w = Wheel::new();
        let deadlines = [1u64, 63, 64, 65, 100, 4095, 4096, 5000, 300_000, 20_000_000];
        let keys: Vec<_> = deadlines.iter().map(|&d| w.insert(d, noop())).collect();
        assert_eq!(w.pending(), deadlines.len());
        for (i, &d) in deadlines.iter().enumerate() {
            assert_eq!(
                w.next_expiration().map(|e| e <= d),
                Some(true),
                "deadline {d}"
            );
            // Nothing fires one tick early.
            assert_eq!(fire(&mut w, d - 1), 0, "fired before {d}");
            assert_eq!(fire(&mut w, d), 1, "did not fire at {d}");
            assert_eq!(w.poll_entry(keys[i], &noop()), EntryPoll::Fired);
        }
        assert_eq!(w.pending(), 0);
        assert_eq!(w.next_expiration(), None);
    }

    #[test]
    fn a_fired_entry_is_freed_at_once_and_its_key_stays_fired() {
        let mut w = Wheel::new();
        let a = w.insert(10, noop());
        assert_eq!(fire(&mut w, 10), 1);
        assert_eq!(w.elapsed(), 10);
        // Its slot is reused without a `remove`...
        let b = w.insert(30, noop());
        assert_eq!(b.index, a.index, "the fired entry was not freed");
        // ...and the stale key reads as fired, touching nothing.
        assert_eq!(w.poll_entry(a, &noop()), EntryPoll::Fired);
        assert!(w.remove(a).is_none());
        assert!(!w.reset(a, 50));
        assert_eq!(w.poll_entry(b, &noop()), EntryPoll::Pending);
        assert_eq!(w.pending(), 1);
    }

    #[test]
    fn removed_timer_never_fires_and_its_entry_is_reused() {
        let mut w = Wheel::new();
        let a = w.insert(10, noop());
        w.remove(a);
        assert_eq!(w.pending(), 0);
        assert_eq!(fire(&mut w, 20), 0);
        let b = w.insert(30, noop());
        assert_eq!(b.index, a.index, "slab entry reused");
        assert_ne!(b.generation, a.generation);
        // The stale key does not touch the new timer.
        assert!(w.remove(a).is_none());
        assert_eq!(w.pending(), 1);
    }

    #[test]
    fn past_deadline_is_fired_at_once_and_reset_rearms() {
        let mut w = Wheel::new();
        assert_eq!(fire(&mut w, 50), 0);
        let k = w.insert(10, noop());
        assert_eq!(w.poll_entry(k, &noop()), EntryPoll::Fired);
        assert!(w.reset(k, 80));
        assert_eq!(w.poll_entry(k, &noop()), EntryPoll::Pending);
        assert_eq!(fire(&mut w, 79), 0);
        assert_eq!(fire(&mut w, 80), 1);
    }

    #[test]
    fn many_random_deadlines_fire_exactly_once_and_never_early() {
        let mut w = Wheel::new();
        let mut rng = crate::util::FastRand::new(7);
        let mut deadlines: Vec<u64> = (0..5000).map(|_| 1 + rng.below(200_000) as u64).collect();
        for &d in &deadlines {
            w.insert(d, noop());
        }
        deadlines.sort_unstable();
        let mut fired = 0;
        let mut now = 0;
        while now < 200_001 {
            now += 1 + rng.below(700) as u64;
            fired += fire(&mut w, now);
            let due = deadlines.partition_point(|&d| d <= now);
            assert_eq!(fired, due, "at {now}");
        }
        assert_eq!(fired, deadlines.len());
    }

    /// Issue 9, bug 2: a deadline beyond the wheel's epoch was filed in
    /// the last level's current slot and refiled there forever by
    /// `advance` (which then never returned). It waits in the overflow
    /// list now, and fires on time once its epoch comes.
    #[test]
    fn deadlines_of_a_later_epoch_wait_in_the_overflow_list_and_fire_on_time() {
        let mut w = Wheel::new();
        assert_eq!(fire(&mut w, 3), 0);
        let epoch = 1u64 << EPOCH_BITS;
        let last_of_this_epoch = w.insert(epoch - 1, noop());
        let first_of_next = w.insert(epoch + 1, noop());
        let later = w.insert(epoch + 5, noop());
        let two_epochs_on = w.insert(2 * epoch + 7, noop());
        let never = w.insert(u64::MAX, noop());
        assert_eq!(w.pending(), 5);
        assert!(w.next_expiration().is_some_and(|t| t < epoch));
        for (now, fires) in [
            (epoch - 2, 0),
            (epoch - 1, 1),
            (epoch, 0),
            (epoch + 1, 1),
            (epoch + 4, 0),
            (epoch + 5, 1),
            (2 * epoch + 6, 0),
            (2 * epoch + 7, 1),
            (1000 * epoch, 0),
        ] {
            assert_eq!(fire(&mut w, now), fires, "at {now}");
        }
        for k in [last_of_this_epoch, first_of_next, later, two_epochs_on] {
            assert_eq!(w.poll_entry(k, &noop()), EntryPoll::Fired);
        }
        assert_eq!(w.poll_entry(never, &noop()), EntryPoll::Pending);
        assert_eq!(w.pending(), 1);
        assert!(w.remove(never).is_some());
        assert_eq!(w.next_expiration(), None);
    }

    /// A deadline on the first tick of a later epoch fires when the wheel
    /// enters that epoch (refiling it would file a deadline that is not
    /// ahead of the wheel's time).
    #[test]
    fn a_deadline_on_an_epoch_boundary_fires_on_time() {
        let mut w = Wheel::new();
        let epoch = 1u64 << EPOCH_BITS;
        let k = w.insert(epoch, noop());
        assert_eq!(fire(&mut w, epoch - 1), 0);
        assert_eq!(fire(&mut w, epoch), 1);
        assert_eq!(w.poll_entry(k, &noop()), EntryPoll::Fired);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn a_jump_across_epochs_fires_everything_due_exactly_once() {
        let mut w = Wheel::new();
        let epoch = 1u64 << EPOCH_BITS;
        let mut rng = crate::util::FastRand::new(11);
        let deadlines: Vec<u64> = (0..2000)
            .map(|i| {
                let base = if i % 2 == 0 {
                    0
                } else {
                    epoch * (1 + i as u64 % 3)
                };
                base + 1 + rng.below(200_000) as u64
            })
            .collect();
        for &d in &deadlines {
            w.insert(d, noop());
        }
        let mut fired = 0;
        for now in [100_000, epoch + 50_000, 4 * epoch] {
            fired += fire(&mut w, now);
            assert_eq!(
                fired,
                deadlines.iter().filter(|&&d| d <= now).count(),
                "at {now}"
            );
        }
        assert_eq!(w.pending(), 0);
    }
}
