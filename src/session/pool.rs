//! The memory pool of a bounded session ([`super::bounded`]).
//!
//! DataFusion's `FairSpillPool` caps every operator that can spill at an equal share of the
//! pool among all such operators of the plan, holding memory or not: gold's per-pair view has
//! eight (two levels of aggregation, partial and final, on each core) while two hold nearly all
//! the groups, so at 5M rows they spilled with three quarters of the pool unused (gold 6.3 s
//! instead of 4.6 s). Its `GreedyMemoryPool` lets one operator take the whole pool, and the
//! sort it does to spill then needs as much again outside the pool (3.6 GB of resident memory
//! under a 2 GiB limit at 50M rows). [`SharedFairPool`] shares the pool equally among the
//! operators that hold memory now, and keeps an eighth of it (the headroom) from those that
//! hold some already: an operator only spills when its own request fails, so without that
//! headroom one operator alone could fill the pool and the next one to start (or a join's
//! table, which cannot spill) would find nothing at all, however small its first request.
//!
//! Two requests cannot be answered by spilling, though the operator making them can spill:
//! an aggregation that spilled merges its spill files at the end, and both the merge's buffers
//! and the groups the merge feeds come out of the operator's share after it let its table go.
//! By then the share may be smaller (others started holding memory) and the headroom is kept
//! from it. So an operator may go past its equal share by the headroom, and one that stays
//! within an equal share counting the next operator to start leaves only half the headroom
//! free; the merge's buffers are bounded by the session's merge fan-in
//! ([`super::merge_fan_in`]). Without these, gold under 48 MiB failed every time and under
//! 64 MiB now and then (a final aggregation "wanted 983000 more bytes", with 670,080 left
//! beside the headroom, and the merge holding 5.6 MB). A refused request names the largest
//! holders of the pool.

use std::collections::HashMap;
use std::sync::Mutex;

use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A memory pool of a fixed size: memory that cannot spill is granted first come, first
/// served; memory that can spill is shared equally among the consumers holding some (each may
/// go past its share by the headroom), and those leave the headroom (1 / [`HEADROOM`] of the
/// pool, half of it while within an equal share) to the ones that hold none yet (see the
/// module's documentation).
#[derive(Debug)]
pub struct SharedFairPool {
    size: usize,
    state: Mutex<State>,
}

/// The part of the pool (1 / HEADROOM) that consumers holding spillable memory leave free for
/// those that start: memory that cannot spill, and the first request of a consumer that can.
pub const HEADROOM: usize = 8;

#[derive(Debug, Default)]
struct State {
    unspillable: usize,
    spillable: usize,
    /// Consumers that can spill and hold memory now.
    holders: usize,
    /// Every consumer holding memory, by consumer id.
    held: HashMap<usize, Held>,
}

/// What one consumer holds.
#[derive(Debug)]
struct Held {
    /// The consumer's name (named in errors).
    name: String,
    bytes: usize,
}

impl SharedFairPool {
    /// A pool of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn add(&mut self, consumer: &MemoryConsumer, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let held = self.held.entry(consumer.id()).or_insert_with(|| Held {
            name: consumer.name().to_string(),
            bytes: 0,
        });
        if consumer.can_spill() && held.bytes == 0 {
            self.holders += 1;
        }
        held.bytes += bytes;
        if consumer.can_spill() {
            self.spillable += bytes;
        } else {
            self.unspillable += bytes;
        }
    }
}

impl MemoryPool for SharedFairPool {
    fn name(&self) -> &str {
        "shared-fair"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.state().add(reservation.consumer(), additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let consumer = reservation.consumer();
        let mut state = self.state();
        if let Some(held) = state.held.get_mut(&consumer.id()) {
            held.bytes = held.bytes.saturating_sub(shrink);
            if held.bytes == 0 {
                state.held.remove(&consumer.id());
                if consumer.can_spill() {
                    state.holders -= 1;
                }
            }
        }
        if consumer.can_spill() {
            state.spillable = state.spillable.saturating_sub(shrink);
        } else {
            state.unspillable = state.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let consumer = reservation.consumer();
        let mut state = self.state();
        let free = self
            .size
            .saturating_sub(state.unspillable + state.spillable);
        if additional > free {
            return Err(exhausted(&state, consumer, additional, free));
        }
        if consumer.can_spill() {
            let held = state.held.get(&consumer.id()).map_or(0, |h| h.bytes);
            let headroom = self.size / HEADROOM;
            let sharing = state.holders + usize::from(held == 0);
            let room = self.size.saturating_sub(state.unspillable);
            // A holder leaves the headroom free; one that would stay within an equal share
            // counting one more holder (the next to start) leaves half of it.
            let keep = match held + additional <= room / (sharing + 1) {
                true => headroom / 2,
                false => headroom,
            };
            if held > 0 && additional + keep > free {
                return Err(exhausted(
                    &state,
                    consumer,
                    additional,
                    free.saturating_sub(keep),
                ));
            }
            // An equal share, and the headroom on top (see the module's documentation).
            let share = room / sharing.max(1) + headroom;
            if held + additional > share {
                return Err(exhausted(
                    &state,
                    consumer,
                    additional,
                    share.saturating_sub(held),
                ));
            }
        }
        state.add(consumer, additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.unspillable + state.spillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.size)
    }
}

impl std::fmt::Display for SharedFairPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        write!(
            f,
            "SharedFairPool(size={}, unspillable={}, spillable={}, holders={})",
            self.size, state.unspillable, state.spillable, state.holders
        )
    }
}

/// The error of a refused request: who asked, for how much, what was left, and the largest
/// holders of the pool (as DataFusion's `TrackConsumersPool` names them).
fn exhausted(
    state: &State,
    consumer: &MemoryConsumer,
    wanted: usize,
    available: usize,
) -> DataFusionError {
    let mut held: Vec<&Held> = state.held.values().collect();
    held.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    let top: Vec<String> = held
        .iter()
        .take(TOP_HOLDERS)
        .map(|h| format!("{} {}", h.name, h.bytes))
        .collect();
    let others = held.len().saturating_sub(TOP_HOLDERS);
    let others = match others {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    DataFusionError::ResourcesExhausted(format!(
        "{} wanted {wanted} more bytes of the memory limit, {available} were available; held by {}{others} (raise --memory-limit)",
        consumer.name(),
        match top.is_empty() {
            true => "none".to_string(),
            false => top.join(", "),
        }
    ))
}

/// How many of the largest holders a refused request names.
const TOP_HOLDERS: usize = 5;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn spillers_share_what_is_left_among_those_holding_memory() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SharedFairPool::new(1000));
        let fixed = MemoryConsumer::new("fixed").register(&pool);
        fixed.try_grow(200).unwrap();
        // Idle spillers take no share.
        let idle: Vec<_> = (0..6)
            .map(|i| {
                MemoryConsumer::new(format!("idle {i}"))
                    .with_can_spill(true)
                    .register(&pool)
            })
            .collect();
        let spiller = |name: &str| {
            MemoryConsumer::new(name.to_string())
                .with_can_spill(true)
                .register(&pool)
        };
        let a = spiller("a");
        // Alone, `a` may hold all that is not fixed, but not the headroom (1000 / 8 = 125)
        // once it holds some.
        a.try_grow(600).unwrap();
        a.try_grow(75).unwrap();
        assert!(
            a.try_grow(1).is_err(),
            "the headroom is for those that start"
        );
        // A second spiller's first request finds the headroom.
        let b = spiller("b");
        b.try_grow(125).unwrap();
        // Two holders: each may hold half of the 800 bytes that are not fixed, and the
        // headroom on top; `a` holds more and is refused (it spills); `b` grows as long as the
        // headroom stays free.
        assert!(a.try_grow(1).is_err());
        a.shrink(375);
        b.try_grow(250).unwrap();
        assert!(b.try_grow(1).is_err());
        a.shrink(200);
        // Past its share (400) by the headroom (125), not by a byte more, though 50 are free
        // beyond the headroom.
        b.try_grow(150).unwrap();
        let e = b.try_grow(1).unwrap_err().to_string();
        assert!(e.contains("0 were available"), "{e}");
        // `a`, within an equal share of three (266), may use half of the headroom, no more.
        a.try_grow(100).unwrap();
        let e = a.try_grow(20).unwrap_err().to_string();
        assert!(e.contains("13 were available"), "{e}");
        a.free();
        // `a` let go: `b` may have all but the headroom.
        b.try_grow(150).unwrap();
        assert!(b.try_grow(1).is_err());
        // Memory that cannot spill finds what is free, the headroom included.
        fixed.try_grow(125).unwrap();
        let e = fixed.try_grow(1).unwrap_err().to_string();
        assert!(e.contains("fixed wanted 1 more bytes"), "{e}");
        b.free();
        fixed.try_grow(675).unwrap();
        drop(idle);
        fixed.free();
        assert_eq!(pool.reserved(), 0);
    }
}
