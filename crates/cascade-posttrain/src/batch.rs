//! Conversations to training batches: the chat template renders each conversation with its
//! loss mask (assistant content and its `<|end_of_turn|>` only), conversations too long for the
//! window are dropped or lose whole leading turns (never a cut turn, always counted), and
//! batches either pack several conversations per row, with positions restarting and attention
//! kept inside each conversation, or hold one conversation per row with right padding.

use cascade_core::{ChatTemplate, Role, Tokenizer};
use cascade_model::BatchLayout;
use cascade_model::burn::prelude::*;
use cascade_pretrain::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::dataset::Conversation;

/// One rendered conversation. A conversation of `n` ids fills `n - 1` positions: inputs
/// `ids[..n-1]`, targets `ids[1..]`, loss where `loss_mask[1..]` is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    /// Token ids of the whole conversation.
    pub ids: Vec<u32>,
    /// `true` on assistant content and its end-of-turn ([`cascade_core::EncodedChat`]).
    pub loss_mask: Vec<bool>,
}

impl SftExample {
    /// Positions the example fills in a row.
    pub fn n_positions(&self) -> usize {
        self.ids.len().saturating_sub(1)
    }

    /// Target tokens that carry loss.
    pub fn n_targets(&self) -> usize {
        self.loss_mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// What to do with a conversation longer than the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Drop it (counted).
    #[default]
    Drop,
    /// Drop whole turns from the start (a leading system turn is kept) until it fits and still
    /// ends with an assistant turn to learn from; else drop it. Counted either way.
    DropLeadingTurns,
}

/// What rendering kept, trimmed and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeReport {
    /// Conversations rendered.
    pub conversations: u64,
    /// Conversations kept (whole or trimmed).
    pub kept: u64,
    /// Kept conversations that lost leading turns.
    pub trimmed: u64,
    /// Turns removed from those.
    pub turns_trimmed: u64,
    /// Conversations dropped because they do not fit the window.
    pub dropped_too_long: u64,
    /// Conversations dropped because no assistant token is left to learn from.
    pub dropped_no_target: u64,
    /// Positions (input tokens) of the kept conversations.
    pub positions: u64,
    /// Target tokens carrying loss in the kept conversations.
    pub target_tokens: u64,
}

/// Renders `conversations` with `template`; each must fit `max_positions` positions
/// (`ids.len() - 1 <= max_positions`), else `truncation` decides.
pub fn encode_conversations(
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
    conversations: &[Conversation],
    max_positions: usize,
    truncation: Truncation,
) -> (Vec<SftExample>, EncodeReport) {
    let mut report = EncodeReport::default();
    let mut examples = Vec::with_capacity(conversations.len());
    for conversation in conversations {
        report.conversations += 1;
        let chat = template.encode(tokenizer, &conversation.messages);
        let mut example = SftExample { ids: chat.ids, loss_mask: chat.loss_mask };
        if example.n_positions() > max_positions {
            let trimmed = match truncation {
                Truncation::Drop => None,
                Truncation::DropLeadingTurns => trim_leading_turns(&example, &chat.turn_spans, conversation, max_positions),
            };
            match trimmed {
                Some((shorter, turns)) => {
                    report.trimmed += 1;
                    report.turns_trimmed += turns;
                    example = shorter;
                }
                None => {
                    report.dropped_too_long += 1;
                    continue;
                }
            }
        }
        if example.n_targets() == 0 {
            report.dropped_no_target += 1;
            continue;
        }
        report.kept += 1;
        report.positions += example.n_positions() as u64;
        report.target_tokens += example.n_targets() as u64;
        examples.push(example);
    }
    (examples, report)
}

/// Drops the fewest leading turns (after a system turn) that make `example` fit, as long as an
/// assistant turn remains. Returns the shorter example and the number of turns dropped.
fn trim_leading_turns(
    example: &SftExample,
    spans: &[(usize, usize)],
    conversation: &Conversation,
    max_positions: usize,
) -> Option<(SftExample, u64)> {
    let keep_system = conversation.messages.first().is_some_and(|m| m.role == Role::System);
    let first_droppable = usize::from(keep_system);
    let head_len = if keep_system { spans[0].1 } else { 0 };
    let (head_ids, head_mask) = (&example.ids[..head_len], &example.loss_mask[..head_len]);
    for (drop_until, &(start, _)) in spans.iter().enumerate().skip(first_droppable + 1) {
        let rest = &conversation.messages[drop_until..];
        if !rest.iter().any(|m| m.role == Role::Assistant) {
            return None;
        }
        let len = head_ids.len() + example.ids.len() - start;
        if len.saturating_sub(1) <= max_positions {
            let ids = head_ids.iter().chain(&example.ids[start..]).copied().collect();
            let loss_mask = head_mask.iter().chain(&example.loss_mask[start..]).copied().collect();
            return Some((SftExample { ids, loss_mask }, (drop_until - first_droppable) as u64));
        }
    }
    None
}

/// A batch on the host, row-major `[rows, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// Rows.
    pub rows: usize,
    /// Positions per row.
    pub width: usize,
    /// Input ids (padding positions hold `pad_id`).
    pub inputs: Vec<i64>,
    /// Next-token targets (0 where no loss is taken).
    pub targets: Vec<i64>,
    /// 1.0 where the loss is taken (assistant tokens), else 0.0.
    pub weights: Vec<f32>,
    /// The lengths of the conversations in each row, in order.
    pub segments: Vec<Vec<usize>>,
}

impl HostBatch {
    /// Target tokens carrying loss.
    pub fn n_targets(&self) -> usize {
        self.weights.iter().filter(|&&w| w > 0.0).count()
    }

    /// Positions holding a real token (not padding).
    pub fn n_positions(&self) -> usize {
        self.segments.iter().flatten().sum()
    }

    /// Whether some row holds more than one conversation.
    pub fn is_packed(&self) -> bool {
        self.segments.iter().any(|row| row.len() > 1)
    }

    /// The attention layout: packed segments when rows hold several conversations, else right
    /// padding.
    pub fn layout(&self, device: &Device) -> cascade_model::Result<BatchLayout> {
        if self.is_packed() {
            BatchLayout::packed(&self.segments, self.width, device)
        } else {
            let lengths: Vec<usize> = self.segments.iter().map(|row| row.iter().sum()).collect();
            BatchLayout::right_padded(&lengths, self.width, device)
        }
    }
}

/// Rows a packed conversation may join: the last this many opened.
const PACK_SEARCH_ROWS: usize = 16;

/// Builds batches from `examples` taken in `order`: with `pack`, each conversation joins the
/// first of the last [`PACK_SEARCH_ROWS`] rows it fits in (`max_positions`), else opens a row;
/// without, one per row. `batch_size` rows per batch;
/// the width is the longest row of the batch. Examples longer than `max_positions` are skipped
/// (encode with the same limit first: [`encode_conversations`] never yields them).
pub fn make_batches(
    examples: &[SftExample],
    order: &[usize],
    max_positions: usize,
    batch_size: usize,
    pack: bool,
    pad_id: u32,
) -> Vec<HostBatch> {
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for &idx in order {
        let n = examples[idx].n_positions();
        if n == 0 || n > max_positions {
            continue;
        }
        // First fit among the last few open rows: short conversations fill the gaps long ones
        // leave, and a row's contents stay close to the shuffled order.
        let open = rows.len().saturating_sub(PACK_SEARCH_ROWS);
        match rows[open..].iter_mut().find(|(used, _)| pack && used + n <= max_positions) {
            Some((used, row)) => {
                *used += n;
                row.push(idx);
            }
            None => rows.push((n, vec![idx])),
        }
    }
    let rows: Vec<Vec<usize>> = rows.into_iter().map(|(_, row)| row).collect();
    rows.chunks(batch_size.max(1)).map(|chunk| assemble(examples, chunk, pad_id)).collect()
}

fn assemble(examples: &[SftExample], rows: &[Vec<usize>], pad_id: u32) -> HostBatch {
    let width = rows.iter().map(|row| row.iter().map(|&i| examples[i].n_positions()).sum::<usize>()).max().unwrap_or(0);
    let mut batch = HostBatch {
        rows: rows.len(),
        width,
        inputs: Vec::with_capacity(rows.len() * width),
        targets: Vec::with_capacity(rows.len() * width),
        weights: Vec::with_capacity(rows.len() * width),
        segments: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let mut lengths = Vec::with_capacity(row.len());
        for &idx in row {
            let example = &examples[idx];
            let n = example.n_positions();
            batch.inputs.extend(example.ids[..n].iter().map(|&id| id as i64));
            batch.targets.extend(example.ids[1..].iter().map(|&id| id as i64));
            batch.weights.extend(example.loss_mask[1..].iter().map(|&m| if m { 1.0 } else { 0.0 }));
            lengths.push(n);
        }
        let pad = width - lengths.iter().sum::<usize>();
        batch.inputs.extend(std::iter::repeat_n(pad_id as i64, pad));
        batch.targets.extend(std::iter::repeat_n(0, pad));
        batch.weights.extend(std::iter::repeat_n(0.0, pad));
        batch.segments.push(lengths);
    }
    batch
}

/// A seeded shuffle of `0..n` for `epoch` (the same seed and epoch always give the same order).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5F7_0000);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Endless training batches: each epoch a fresh seeded shuffle, packed or padded. Its state is
/// the number of batches served, so a resumed run continues with the same batches.
#[derive(Debug, Clone)]
pub struct BatchStream<'a> {
    examples: &'a [SftExample],
    max_positions: usize,
    batch_size: usize,
    pack: bool,
    pad_id: u32,
    seed: u64,
    epoch: u64,
    epoch_batches: Vec<HostBatch>,
    next_in_epoch: usize,
    served: u64,
}

impl<'a> BatchStream<'a> {
    /// A stream over `examples` (at least one must fit `max_positions`).
    pub fn new(examples: &'a [SftExample], max_positions: usize, batch_size: usize, pack: bool, pad_id: u32, seed: u64) -> Self {
        let mut stream = Self {
            examples,
            max_positions,
            batch_size,
            pack,
            pad_id,
            seed,
            epoch: 0,
            epoch_batches: Vec::new(),
            next_in_epoch: 0,
            served: 0,
        };
        stream.start_epoch(0);
        stream
    }

    fn start_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        let order = epoch_order(self.examples.len(), self.seed, epoch);
        self.epoch_batches = make_batches(self.examples, &order, self.max_positions, self.batch_size, self.pack, self.pad_id);
        self.next_in_epoch = 0;
    }

    /// Batches served so far (save it with a checkpoint).
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Whole epochs completed (fractional: batches into the current one over its batches).
    pub fn epochs(&self) -> f64 {
        self.epoch as f64 + self.next_in_epoch as f64 / self.epoch_batches.len().max(1) as f64
    }

    /// Continues after `served` batches, replaying the epochs' shuffles.
    pub fn skip_to(&mut self, served: u64) {
        self.start_epoch(0);
        self.served = 0;
        while self.served < served {
            if self.next().is_none() {
                break;
            }
        }
    }
}

impl Iterator for BatchStream<'_> {
    type Item = HostBatch;

    /// The next batch; `None` only when no example fits the window.
    fn next(&mut self) -> Option<HostBatch> {
        if self.next_in_epoch >= self.epoch_batches.len() {
            self.start_epoch(self.epoch + 1);
            if self.epoch_batches.is_empty() {
                return None;
            }
        }
        let batch = self.epoch_batches[self.next_in_epoch].clone();
        self.next_in_epoch += 1;
        self.served += 1;
        Some(batch)
    }
}

/// Tensors of a [`HostBatch`] on a device.
#[derive(Debug, Clone)]
pub struct DeviceBatch {
    /// `[rows, width]` input ids.
    pub inputs: Tensor<2, Int>,
    /// `[rows, width]` target ids.
    pub targets: Tensor<2, Int>,
    /// `[rows, width]` loss weights.
    pub weights: Tensor<2>,
    /// Padding, positions, segments.
    pub layout: BatchLayout,
}

impl DeviceBatch {
    /// Moves `batch` to `device`.
    pub fn new(batch: &HostBatch, device: &Device) -> cascade_model::Result<Self> {
        let shape = [batch.rows, batch.width];
        Ok(Self {
            inputs: Tensor::<1, Int>::from_ints(batch.inputs.as_slice(), device).reshape(shape),
            targets: Tensor::<1, Int>::from_ints(batch.targets.as_slice(), device).reshape(shape),
            weights: Tensor::<1>::from_data(TensorData::new(batch.weights.clone(), [batch.weights.len()]), device)
                .reshape(shape),
            layout: batch.layout(device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_core::{AllowedSpecial, Message, TokenizerError};

    /// One id per byte, chat specials from 256.
    struct Bytes;

    impl Tokenizer for Bytes {
        fn encode(&self, text: &str, _allowed: &AllowedSpecial) -> Vec<u32> {
            text.bytes().map(u32::from).collect()
        }
        fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
            Ok(ids.iter().filter(|&&id| id < 256).map(|&id| id as u8).collect())
        }
        fn vocab_size(&self) -> usize {
            260
        }
        fn special_token(&self, name: &str) -> Option<u32> {
            ["<|system|>", "<|user|>", "<|assistant|>", "<|end_of_turn|>"].iter().position(|n| *n == name).map(|i| 256 + i as u32)
        }
        fn fingerprint(&self) -> String {
            "bytes".into()
        }
    }

    fn encode(conversations: &[Conversation], max: usize, truncation: Truncation) -> (Vec<SftExample>, EncodeReport) {
        let template = ChatTemplate::new(&Bytes).unwrap();
        encode_conversations(&template, &Bytes, conversations, max, truncation)
    }

    #[test]
    fn loss_mask_is_exactly_the_assistant_tokens_and_their_end_of_turn() {
        let (examples, _) = encode(&[Conversation::exchange("hi", "yo")], 64, Truncation::Drop);
        let batches = make_batches(&examples, &[0], 64, 1, false, 0);
        let batch = &batches[0];
        // <|user|> h i <eot> <|assistant|> y o <eot>: 8 ids, 7 positions.
        assert_eq!(batch.width, 7);
        let learned: Vec<i64> =
            batch.targets.iter().zip(&batch.weights).filter(|(_, w)| **w > 0.0).map(|(t, _)| *t).collect();
        assert_eq!(learned, vec![b'y' as i64, b'o' as i64, 259]);
        assert_eq!(batch.inputs[..4], [257, b'h' as i64, b'i' as i64, 259]);
    }

    #[test]
    fn too_long_conversations_are_dropped_or_lose_whole_leading_turns() {
        let long = Conversation::new(vec![
            Message::new(Role::System, "s"),
            Message::new(Role::User, "aaaaaaaaaa"),
            Message::new(Role::Assistant, "bbbbbbbbbb"),
            Message::new(Role::User, "c"),
            Message::new(Role::Assistant, "d"),
        ]);
        let short = Conversation::exchange("x", "y");
        let conversations = [long.clone(), short];
        let (kept, report) = encode(&conversations, 12, Truncation::Drop);
        assert_eq!((kept.len(), report.dropped_too_long, report.trimmed), (1, 1, 0));
        let (kept, report) = encode(&conversations, 12, Truncation::DropLeadingTurns);
        assert_eq!((report.kept, report.trimmed, report.turns_trimmed, report.dropped_too_long), (2, 1, 2, 0));
        // System turn kept, the first exchange gone, the last exchange whole.
        let expected = encode(
            &[Conversation::new(vec![long.messages[0].clone(), long.messages[3].clone(), long.messages[4].clone()])],
            64,
            Truncation::Drop,
        )
        .0;
        assert_eq!(kept[0], expected[0]);
        let (_, report) = encode(&[long], 4, Truncation::DropLeadingTurns);
        assert_eq!(report.dropped_too_long, 1, "no turn is ever cut: too long even alone is dropped");
        assert_eq!(report.conversations, report.kept + report.dropped_too_long + report.dropped_no_target);
    }

    #[test]
    fn packing_fills_rows_and_records_segments() {
        let conversations: Vec<Conversation> = (0..5).map(|i| Conversation::exchange("ab", "c".repeat(i + 1))).collect();
        let (examples, _) = encode(&conversations, 64, Truncation::Drop);
        let lens: Vec<usize> = examples.iter().map(SftExample::n_positions).collect();
        assert_eq!(lens, vec![6, 7, 8, 9, 10]);
        let order: Vec<usize> = (0..5).collect();
        let packed = make_batches(&examples, &order, 20, 2, true, 0);
        assert_eq!(packed.iter().map(|b| b.segments.clone()).collect::<Vec<_>>(), vec![vec![vec![6, 7], vec![8, 9]], vec![vec![10]]]);
        assert_eq!(packed[0].width, 17);
        assert_eq!(packed.iter().map(HostBatch::n_targets).sum::<usize>(), examples.iter().map(SftExample::n_targets).sum::<usize>());
        let padded = make_batches(&examples, &order, 20, 2, false, 0);
        assert_eq!(padded.len(), 3);
        assert!(!padded[0].is_packed());
    }

    #[test]
    fn stream_resumes_with_the_same_batches() {
        let conversations: Vec<Conversation> = (0..7).map(|i| Conversation::exchange("q", "a".repeat(i + 1))).collect();
        let (examples, _) = encode(&conversations, 64, Truncation::Drop);
        let mut a = BatchStream::new(&examples, 20, 2, true, 0, 5);
        let first: Vec<HostBatch> = a.by_ref().take(9).collect();
        let rest: Vec<HostBatch> = a.by_ref().take(4).collect();
        let mut b = BatchStream::new(&examples, 20, 2, true, 0, 5);
        b.skip_to(9);
        assert_eq!(b.served(), 9);
        assert_eq!(b.take(4).collect::<Vec<_>>(), rest);
        assert_ne!(epoch_order(7, 5, 0), epoch_order(7, 5, 1), "epochs reshuffle");
        assert!(first.iter().all(|batch| batch.rows <= 2));
    }
}
