//! A thread's memory of the latest answers of a pure function of a string (a user agent's parse, whether
//! it is a bot): a store's events come in sessions, each repeating its visitor's user agent, so most
//! answers are asked again within a batch. Bounded: a full memory is forgotten at once and fills again,
//! which costs one computation per key and never a wrong answer (the function is pure).

use std::collections::HashMap;

/// Up to `capacity` answers by key; see the module docs.
#[derive(Debug)]
pub struct Recent<V> {
    answers: HashMap<String, V>,
    capacity: usize,
}

impl<V: Clone> Recent<V> {
    /// An empty memory that keeps up to `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            answers: HashMap::new(),
            capacity,
        }
    }

    /// `compute(key)`, remembered: the remembered answer when there is one.
    pub fn get_or(&mut self, key: &str, compute: impl FnOnce(&str) -> V) -> V {
        if let Some(known) = self.answers.get(key) {
            return known.clone();
        }
        let answer = compute(key);
        if self.answers.len() >= self.capacity {
            self.answers.clear();
        }
        self.answers.insert(key.to_owned(), answer.clone());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_answer_is_not_computed_again_until_the_memory_is_full() {
        let mut recent = Recent::new(2);
        let mut computed = Vec::new();
        let mut ask = |recent: &mut Recent<usize>, key: &str| {
            recent.get_or(key, |k| {
                computed.push(k.to_owned());
                k.len()
            })
        };
        for key in ["a", "bb", "a", "bb"] {
            assert_eq!(ask(&mut recent, key), key.len());
        }
        // A third key forgets the first two; every answer stays the function's.
        for key in ["ccc", "a", "ccc"] {
            assert_eq!(ask(&mut recent, key), key.len());
        }
        assert_eq!(computed, ["a", "bb", "ccc", "a"]);
    }
}
