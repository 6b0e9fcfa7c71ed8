//! A slab of values addressed by small integers, which become poll tokens.
//!
//! A slot freed while the loop handles one batch of poll events is not handed
//! out again before [`Table::release_freed`], which the loop calls between
//! batches: a later event of the same batch for the removed value then finds
//! an empty slot, never a newcomer that took its index (mio's docs ask for
//! exactly this: a token must not be reused while events for it may still be
//! queued).

/// Values in reusable slots; a freed slot is handed out again later.
#[derive(Debug)]
pub struct Table<T> {
    slots: Vec<Option<T>>,
    /// Slots free to hand out now.
    free: Vec<usize>,
    /// Slots freed during the current batch of events.
    freed: Vec<usize>,
    len: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Table<T> {
    /// Stores `value`, returning its index.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(value);
                index
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    /// The index `insert` will hand out next.
    pub fn next_index(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Removes and returns the value at `index`. Its slot is reused only
    /// after the next [`Table::release_freed`].
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.slots.get_mut(index)?.take()?;
        self.freed.push(index);
        self.len -= 1;
        Some(value)
    }

    /// Makes the slots removed since the last call available again. Call
    /// between batches of poll events, when no event can still name them.
    pub fn release_freed(&mut self) {
        // Called every turn of the loop, and most turns free nothing.
        if !self.freed.is_empty() {
            self.free.append(&mut self.freed);
        }
    }

    /// The value at `index`.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.slots.get(index)?.as_ref()
    }

    /// The value at `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.as_mut()
    }

    /// Gives back the slots' memory when nothing is stored (call between
    /// batches, like [`Table::release_freed`]).
    pub fn shrink(&mut self) {
        if self.len == 0 {
            *self = Table::default();
        }
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values stored, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    /// The indices in use.
    pub fn indices(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|_| i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn a_slot_freed_in_a_batch_is_not_reused_until_released() {
        let mut table = Table::default();
        let a = table.insert("a");
        let b = table.insert("b");
        assert_eq!(table.remove(a), Some("a"));
        // Same batch: a late event for `a` must find nothing, not `c`.
        let c = table.insert("c");
        assert_ne!(c, a);
        assert_eq!(table.get(a), None);
        assert_eq!(table.next_index(), table.insert("d"));
        table.release_freed();
        assert_eq!(table.next_index(), a);
        assert_eq!(table.insert("e"), a);
        assert_eq!(table.len(), 4);
        assert_eq!(table.get(b), Some(&"b"));
    }
}
