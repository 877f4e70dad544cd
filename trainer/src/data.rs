//! Training windows: biographies in shuffled order (a fresh order each pass, from the `DataOrder` stream),
//! concatenated with an `<eot>` token after each, cut into windows of `context + 1` tokens.

use physlab_generators::dataset::TokenDataset;
use physlab_generators::rng::{stream, Purpose};
use physlab_generators::tokenizer::EOT;
use rand::seq::SliceRandom;

pub struct WindowLoader<'a> {
    data: &'a TokenDataset,
    seed: u64,
    epoch: u64,
    order: Vec<usize>,
    next_doc: usize,
    buffer: Vec<u32>,
    /// Windows handed out so far (the data cursor).
    pub windows: u64,
}

impl<'a> WindowLoader<'a> {
    pub fn new(data: &'a TokenDataset, seed: u64) -> Self {
        let mut l = WindowLoader {
            data,
            seed,
            epoch: 0,
            order: Vec::new(),
            next_doc: 0,
            buffer: Vec::new(),
            windows: 0,
        };
        l.shuffle();
        l
    }

    fn shuffle(&mut self) {
        self.order = (0..self.data.documents()).collect();
        let mut rng = stream(self.seed, Purpose::DataOrder, self.epoch);
        self.order.shuffle(&mut rng);
        self.next_doc = 0;
    }

    /// The next window of `len` tokens; consecutive windows overlap by one token, so every token is a target
    /// exactly once per pass.
    pub fn next_window(&mut self, len: usize) -> Vec<u32> {
        while self.buffer.len() < len {
            if self.next_doc == self.order.len() {
                self.epoch += 1;
                self.shuffle();
            }
            let d = self.order[self.next_doc];
            self.next_doc += 1;
            self.buffer.extend_from_slice(self.data.document(d));
            self.buffer.push(EOT);
        }
        let w = self.buffer[..len].to_vec();
        self.buffer.drain(..len - 1);
        self.windows += 1;
        w
    }

    /// A batch as (inputs, targets), each `batch × context`, row-major.
    pub fn next_batch(&mut self, batch: usize, context: usize) -> (Vec<i32>, Vec<i32>) {
        let mut x = Vec::with_capacity(batch * context);
        let mut y = Vec::with_capacity(batch * context);
        for _ in 0..batch {
            let w = self.next_window(context + 1);
            x.extend(w[..context].iter().map(|&t| t as i32));
            y.extend(w[1..].iter().map(|&t| t as i32));
        }
        (x, y)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}
