//! The timer wheel: 6 levels of 64 slots, 1 ms per level-0 slot.
//!
//! Level `l` slots span `64^l` ms, so the levels cover 64 ms, 4.1 s,
//! 4.4 min, 4.7 h, 12.4 days and 2.2 years ahead; later deadlines are
//! clamped to the last level and cascade down as time passes. A timer
//! sits at the level where its deadline first differs from the wheel's
//! current time in a 6-bit digit, so every timer at a lower level expires
//! before any timer at a higher one.
//!
//! Entries live in a slab (`Vec<Entry>`) and slots are doubly linked lists
//! of slab indices: registering a timer allocates nothing once the slab
//! has grown to the peak number of pending timers, and cancelling one
//! unlinks it in O(1). A `Key` (index + generation) names an entry; the
//! generation makes a stale key (of a freed and reused entry) harmless.

use std::task::Waker;

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// The furthest a deadline may lie ahead (ticks): beyond, it is clamped.
const MAX_DURATION: u64 = (1 << (SLOT_BITS * LEVELS as u32)) - 1;
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
    /// Expired; the waker was taken and woken.
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
    /// Number of `Waiting` entries.
    pending: usize,
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
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending
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

    /// The tick of the earliest pending timer.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        (0..LEVELS).find_map(|l| self.level_next_expiration(l))
    }

    /// Fires every timer due at or before `now`, handing each waker to
    /// `wake` (the caller wakes them after releasing its lock).
    pub(crate) fn advance(&mut self, now: u64, wake: &mut Vec<Waker>) {
        while let Some((level, slot, deadline)) = self.next_slot() {
            if deadline > now {
                break;
            }
            // Take the slot's whole list, then refile or fire each entry.
            let mut cur = self.levels[level].heads[slot];
            self.levels[level].heads[slot] = NIL;
            self.levels[level].occupied &= !(1 << slot);
            self.elapsed = self.elapsed.max(deadline);
            while cur != NIL {
                let e = &mut self.entries[cur as usize];
                let next = e.next;
                e.prev = NIL;
                e.next = NIL;
                self.pending -= 1;
                if e.deadline <= now {
                    e.state = EntryState::Fired;
                    if let Some(w) = e.waker.take() {
                        wake.push(w);
                    }
                } else {
                    // Cascade to a lower level.
                    self.link(cur);
                }
                cur = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
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

    /// Files a waiting entry in the slot its deadline belongs to.
    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let deadline = deadline.min(self.elapsed + MAX_DURATION);
        let level = level_for(self.elapsed, deadline);
        let slot = ((deadline >> (SLOT_BITS * level as u32)) as usize) % SLOTS;
        let head = self.levels[level].heads[slot];
        {
            let e = &mut self.entries[index as usize];
            e.state = EntryState::Waiting;
            e.level = level as u8;
            e.slot = slot as u8;
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.levels[level].heads[slot] = index;
        self.levels[level].occupied |= 1 << slot;
        self.pending += 1;
    }

    fn unlink(&mut self, index: u32) {
        let (level, slot, prev, next) = {
            let e = &self.entries[index as usize];
            (e.level as usize, e.slot as usize, e.prev, e.next)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.levels[level].heads[slot] = next;
            if next == NIL {
                self.levels[level].occupied &= !(1 << slot);
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
        self.pending = 0;
        wakers
    }
}

/// The level at which a deadline is filed: the highest 6-bit digit in
/// which it differs from `elapsed`.
fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
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
}
