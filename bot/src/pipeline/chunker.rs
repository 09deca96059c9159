//! Content-defined chunking: FastCDC 2020 as the `fastcdc` crate cuts (normalization level
//! 1), its gear table seeded from the backup's secret, over one buffer a reader keeps from
//! file to file: a small file costs its read, not a fresh buffer of the largest chunk and a
//! shift of that buffer after each chunk (what `fastcdc`'s `StreamCDC` does).

use anyhow::Result;
use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, Normalization, MASKS};
use std::io::{ErrorKind, Read};

/// FastCDC's normalization: chunk sizes drawn towards the average, as `StreamCDC` defaults.
const NORMALIZATION: Normalization = Normalization::Level1;

/// Where content-defined chunks end, for one gear table and one set of sizes.
pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_shifted: Box<[u64; 256]>,
    min: usize,
    avg: usize,
    max: usize,
    /// The mask before the average size, and after it.
    mask_small: u64,
    mask_large: u64,
    /// Bytes held while a source is cut: `max` of them once [`Chunker::each_chunk`] ran.
    buffer: Vec<u8>,
}

impl Chunker {
    /// A chunker cutting chunks of `min` to `max` bytes, `avg` on average, with FastCDC's
    /// gear table seeded by `seed` (as `StreamCDC::with_level_and_seed`).
    pub(super) fn new(seed: u64, min: u32, avg: u32, max: u32) -> Self {
        let bits = logarithm2(avg);
        let (gear, gear_shifted) = get_gear_with_seed(seed);
        Self {
            gear,
            gear_shifted,
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
            mask_small: MASKS[(bits + NORMALIZATION.bits()) as usize],
            mask_large: MASKS[(bits - NORMALIZATION.bits()) as usize],
            buffer: Vec::new(),
        }
    }

    /// The length of the first chunk of `data`: all of it when it is no longer than the
    /// smallest chunk; otherwise where a cut of its first `max` bytes falls.
    pub fn first_len(&self, data: &[u8]) -> usize {
        cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_small,
            self.mask_large,
            self.mask_small << 1,
            self.mask_large << 1,
            &self.gear,
            &self.gear_shifted,
        )
        .1
    }

    /// Reads `source` to its end and calls `each` with its chunks in order, while `each`
    /// returns `Ok(true)`; `Ok(false)` once it returned `false`. Each chunk is cut from the
    /// next `max` bytes (or all that is left), as `StreamCDC` cuts.
    pub fn each_chunk(
        &mut self,
        mut source: impl Read,
        mut each: impl FnMut(&[u8]) -> Result<bool>,
    ) -> Result<bool> {
        self.buffer.resize(self.max, 0);
        let mut held = 0;
        let mut ended = false;
        loop {
            while !ended && held < self.max {
                match source.read(&mut self.buffer[held..]) {
                    Ok(0) => ended = true,
                    Ok(read) => held += read,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if held == 0 {
                return Ok(true);
            }
            let len = self.first_len(&self.buffer[..held]);
            if !each(&self.buffer[..len])? {
                return Ok(false);
            }
            self.buffer.copy_within(len..held, 0);
            held -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::StreamCDC;
    use proptest::prelude::*;

    /// A reader giving at most `step` bytes a read, and an interruption before each.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(ErrorKind::Interrupted.into());
            }
            let len = self.step.min(out.len()).min(self.data.len());
            out[..len].copy_from_slice(&self.data[..len]);
            self.data = &self.data[len..];
            Ok(len)
        }
    }

    /// `len` bytes from `seed` by xorshift.
    fn sample(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// The chunk lengths `StreamCDC` cuts `data` into.
    fn stream_cdc_lengths(data: &[u8], seed: u64, sizes: (u32, u32, u32)) -> Vec<usize> {
        let (min, avg, max) = sizes;
        StreamCDC::with_level_and_seed(data, min, avg, max, NORMALIZATION, seed)
            .map(|chunk| chunk.unwrap().length)
            .collect()
    }

    /// The chunks [`Chunker::each_chunk`] cuts what `source` reads into.
    fn our_chunks(chunker: &mut Chunker, source: impl Read) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let went_on = chunker
            .each_chunk(source, |chunk| {
                chunks.push(chunk.to_vec());
                Ok(true)
            })
            .unwrap();
        assert!(went_on);
        chunks
    }

    /// The lengths of `chunks`, checked to put `data` back together.
    fn lengths_of(chunks: &[Vec<u8>], data: &[u8]) -> Vec<usize> {
        assert_eq!(chunks.concat(), data);
        chunks.iter().map(Vec::len).collect()
    }

    proptest! {
        /// Over small sizes (many cuts a sample), one chunker reused from source to source,
        /// each read short and interrupted: the cuts are `StreamCDC`'s.
        #[test]
        fn cuts_where_stream_cdc_cuts(
            seed in any::<u64>(),
            lens in proptest::collection::vec(0usize..20_000, 1..6),
            step in 1usize..3000,
        ) {
            let sizes = (64, 256, 1024);
            let mut chunker = Chunker::new(seed, sizes.0, sizes.1, sizes.2);
            for (number, len) in lens.into_iter().enumerate() {
                let data = sample(seed ^ number as u64, len);
                let source = Trickle { data: &data, step, interrupt: false };
                let chunks = our_chunks(&mut chunker, source);
                prop_assert_eq!(lengths_of(&chunks, &data), stream_cdc_lengths(&data, seed, sizes));
            }
        }
    }

    #[test]
    fn cuts_file_content_where_stream_cdc_cuts() {
        use super::super::scan::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
        let sizes = (MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
        let seed = 0x9e37_79b9_7f4a_7c15;
        let mut chunker = Chunker::new(seed, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
        let sources = [
            sample(1, 5 << 20),
            Vec::new(),
            vec![0; 3 << 20],
            sample(2, 300),
            sample(3, MIN_CHUNK as usize),
            sample(4, MIN_CHUNK as usize + 1),
        ];
        for data in &sources {
            let chunks = our_chunks(&mut chunker, &data[..]);
            let lengths = lengths_of(&chunks, data);
            assert_eq!(lengths, stream_cdc_lengths(data, seed, sizes));
        }
        assert!(our_chunks(&mut chunker, &sources[0][..]).len() > 5);
    }

    #[test]
    fn first_len_is_the_first_cut_of_stream_cdc() {
        let seed = 42;
        let chunker = Chunker::new(seed, 1024, 4096, 16384);
        for len in [1, 1024, 1025, 4096, 16384, 100_000] {
            let data = sample(len as u64, len);
            assert_eq!(
                chunker.first_len(&data),
                stream_cdc_lengths(&data, seed, (1024, 4096, 16384))[0]
            );
        }
    }

    #[test]
    fn stops_when_told() {
        let mut chunker = Chunker::new(1, 64, 256, 1024);
        let data = sample(1, 10_000);
        let mut seen = 0;
        let went_on = chunker
            .each_chunk(&data[..], |_| {
                seen += 1;
                Ok(seen < 2)
            })
            .unwrap();
        assert!(!went_on);
        assert_eq!(seen, 2);
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let mut chunker = Chunker::new(1, 64, 256, 1024);
        let error = chunker.each_chunk(Broken, |_| Ok(true)).unwrap_err();
        assert!(error.to_string().contains("disk gone"), "{error}");
    }
}
