//! What a forward pass needs beyond token ids ([`BatchLayout`]: padding, positions, packed
//! segments) and the self-attention [`KvCache`] that incremental decoding continues from.

use burn::prelude::*;

use crate::blocks::attention::LayerKv;
use crate::blocks::mask::{AttnMask, self_attention_mask, self_attention_mask_over};
use crate::blocks::position::Positions;
use crate::error::{ModelError, Result};

/// Per-token layout of a batch `[B, T]`; every field is optional and defaults to "a plain,
/// unpadded, unpacked batch starting at position 0 (or where the cache left off)".
#[derive(Clone, Debug, Default)]
pub struct BatchLayout {
    /// `[B, T]`, `true` where the token is padding: no query attends to it. A padding query
    /// sees nothing and its hidden state is meaningless (never NaN); ignore its outputs.
    pub padding: Option<Tensor<2, Bool>>,
    /// `[B, T]`, the position of each token (rotary angle or learned-table row). Must stay below
    /// the config's maximum length.
    pub positions: Option<Tensor<2, Int>>,
    /// `[B, T]`, segment ids of documents packed into one row: attention never crosses from
    /// one segment to another.
    pub segments: Option<Tensor<2, Int>>,
}

impl BatchLayout {
    /// Layout for prompts of `lengths[b]` tokens right-aligned in rows of `width` tokens (left
    /// padding, the layout batched generation wants): padding on the left, positions counting
    /// from 0 at each row's first real token.
    pub fn left_padded(lengths: &[usize], width: usize, device: &Device) -> Result<Self> {
        let mut padding = Vec::with_capacity(lengths.len() * width);
        let mut positions = Vec::with_capacity(lengths.len() * width);
        for &len in lengths {
            check_row(len, width)?;
            let pad = width - len;
            padding.extend((0..width).map(|col| col < pad));
            positions.extend((0..width).map(|col| col.saturating_sub(pad) as i64));
        }
        Ok(Self::from_vecs(lengths.len(), width, padding, positions, None, device))
    }

    /// Layout for sequences of `lengths[b]` tokens left-aligned in rows of `width` tokens (right
    /// padding, the usual training layout).
    pub fn right_padded(lengths: &[usize], width: usize, device: &Device) -> Result<Self> {
        let mut padding = Vec::with_capacity(lengths.len() * width);
        let mut positions = Vec::with_capacity(lengths.len() * width);
        for &len in lengths {
            check_row(len, width)?;
            padding.extend((0..width).map(|col| col >= len));
            positions.extend((0..width).map(|col| col as i64));
        }
        Ok(Self::from_vecs(lengths.len(), width, padding, positions, None, device))
    }

    /// Layout for rows that each pack several documents: `segment_lengths[b]` lists the
    /// lengths of the documents in row `b`, in order; the rest of the row is padding.
    /// Positions restart at 0 in every document and attention stays inside each one.
    pub fn packed(segment_lengths: &[Vec<usize>], width: usize, device: &Device) -> Result<Self> {
        let rows = segment_lengths.len();
        let mut padding = Vec::with_capacity(rows * width);
        let mut positions = Vec::with_capacity(rows * width);
        let mut segments = Vec::with_capacity(rows * width);
        for docs in segment_lengths {
            check_row(docs.iter().sum(), width)?;
            for (seg, &len) in docs.iter().enumerate() {
                padding.extend(std::iter::repeat_n(false, len));
                positions.extend((0..len).map(|p| p as i64));
                segments.extend(std::iter::repeat_n(seg as i64, len));
            }
            let used: usize = docs.iter().sum();
            padding.extend(std::iter::repeat_n(true, width - used));
            positions.extend(std::iter::repeat_n(0, width - used));
            segments.extend(std::iter::repeat_n(docs.len() as i64, width - used));
        }
        Ok(Self::from_vecs(rows, width, padding, positions, Some(segments), device))
    }

    fn from_vecs(
        rows: usize,
        width: usize,
        padding: Vec<bool>,
        positions: Vec<i64>,
        segments: Option<Vec<i64>>,
        device: &Device,
    ) -> Self {
        let ints = |v: Vec<i64>| Tensor::<1, Int>::from_ints(v.as_slice(), device).reshape([rows, width]);
        Self {
            padding: Some(
                Tensor::<1, Bool>::from_bool(TensorData::new(padding, [rows * width]), device)
                    .reshape([rows, width]),
            ),
            positions: Some(ints(positions)),
            segments: segments.map(ints),
        }
    }

    /// Positions and mask for a forward pass over `t` tokens with no cache.
    pub(crate) fn step(&self, t: usize, causal: bool, device: &Device) -> (Positions, AttnMask) {
        let positions = match &self.positions {
            Some(p) => Positions::PerRow(p.clone()),
            None => Positions::Offset(0),
        };
        let segments = self.segments.as_ref().map(|s| (s, s));
        let mask = self_attention_mask(causal, t, 0, self.padding.as_ref(), segments, device);
        (positions, mask)
    }
}

fn check_row(len: usize, width: usize) -> Result<()> {
    if len > width {
        return Err(ModelError::InvalidInput {
            message: format!("a row of {len} tokens does not fit a batch width of {width}"),
        });
    }
    Ok(())
}

/// Keys and values of every self-attention layer for the tokens seen so far, plus their
/// padding/segment layout and the next position of each row.
///
/// Keys and values live in per-layer buffers with room to spare: each step writes its new
/// keys/values in place, and a full buffer doubles, so decoding never copies the whole cache
/// per token. [`KvCache::reserve`] sizes the buffers up front (prompt plus the tokens to
/// generate) so they never grow at all. Attention reads the whole buffers under a mask that
/// hides the slots not filled yet, which costs a little arithmetic on the spare slots but no
/// copy of the filled prefix.
///
/// Rows can be dropped ([`KvCache::select_rows`]) when their sequence finishes, and the cache
/// can be cut back ([`KvCache::truncate`]) or emptied ([`KvCache::clear`]).
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    len: usize,
    padding: Option<Tensor<2, Bool>>,
    segments: Option<Tensor<2, Int>>,
    next_positions: Option<Tensor<2, Int>>,
}

impl KvCache {
    /// An empty cache for a stack of `n_layers` self-attention layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![LayerKv::default(); n_layers],
            len: 0,
            padding: None,
            segments: None,
            next_positions: None,
        }
    }

    /// Number of cached time steps (columns, padding included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the buffers hold at least `steps` time steps (padding included) when they are next
    /// allocated: call it before the first step (prompt width plus tokens to generate) and the
    /// buffers never grow.
    pub fn reserve(&mut self, steps: usize) {
        for layer in &mut self.layers {
            layer.reserve = layer.reserve.max(steps);
        }
    }

    /// Time steps the buffers hold before they grow (0 before the first step).
    pub fn capacity(&self) -> usize {
        self.layers.iter().map(|l| l.capacity()).min().unwrap_or(0)
    }

    /// Number of batch rows cached (0 before the first step).
    pub fn batch_size(&self) -> usize {
        self.layers.iter().find_map(|l| l.k.as_ref().map(|k| k.dims()[0])).unwrap_or(0)
    }

    /// Drops everything cached; the cache can then start a new batch.
    pub fn clear(&mut self) {
        *self = Self::new(self.layers.len());
    }

    /// Keeps only the first `len` time steps (no-op if `len >= self.len()`). Per-row next
    /// positions move back by the same amount, which is right when every dropped step held a
    /// real token.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        if len == 0 {
            self.clear();
            return;
        }
        // The buffers keep their capacity; the next step overwrites the dropped steps in place.
        for layer in &mut self.layers {
            layer.len = len;
        }
        self.padding = self.padding.take().map(|p| p.narrow(1, 0, len));
        self.segments = self.segments.take().map(|s| s.narrow(1, 0, len));
        let dropped = (self.len - len) as i64;
        self.next_positions = self.next_positions.take().map(|p| p.sub_scalar(dropped));
        self.len = len;
    }

    /// Keeps only the batch rows listed in `rows` (in that order), e.g. to drop finished
    /// sequences from batched generation.
    pub fn select_rows(&mut self, rows: &[usize]) {
        let Some(device) = self.device() else { return };
        let idx = Tensor::<1, Int>::from_ints(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>().as_slice(),
            &device,
        );
        for layer in &mut self.layers {
            layer.k = layer.k.take().map(|k| k.select(0, idx.clone()));
            layer.v = layer.v.take().map(|v| v.select(0, idx.clone()));
        }
        self.padding = self.padding.take().map(|p| select_bool_rows(p, idx.clone()));
        self.segments = self.segments.take().map(|s| s.select(0, idx.clone()));
        self.next_positions = self.next_positions.take().map(|p| p.select(0, idx.clone()));
    }

    /// Bytes allocated for keys and values (the buffers' whole capacity).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| [&l.k, &l.v])
            .flatten()
            .map(|t| t.shape().num_elements() * t.dtype().size())
            .sum()
    }

    fn device(&self) -> Option<Device> {
        self.layers.iter().find_map(|l| l.k.as_ref().map(|k| k.device()))
    }

    /// Registers `t` new tokens of a `batch`-row chunk: extends the padding/segment layout and
    /// returns the positions and mask the chunk's forward pass uses.
    pub(crate) fn step(
        &mut self,
        batch: usize,
        t: usize,
        layout: &BatchLayout,
        causal: bool,
        device: &Device,
    ) -> (Positions, AttnMask) {
        let past = self.len;
        let positions = match (&layout.positions, &self.next_positions) {
            (Some(p), _) => Positions::PerRow(p.clone()),
            (None, Some(next)) => {
                let offsets = Tensor::<1, Int>::arange(0..t as i64, device).reshape([1, t]);
                Positions::PerRow(next.clone().expand([batch, t]) + offsets.expand([batch, t]))
            }
            (None, None) => Positions::Offset(past),
        };
        self.next_positions = match &positions {
            Positions::PerRow(p) => Some(p.clone().narrow(1, t - 1, 1).add_scalar(1)),
            Positions::Offset(_) => None,
        };
        self.padding = extend(self.padding.take(), layout.padding.clone(), batch, past, t, device);
        self.segments = extend(self.segments.take(), layout.segments.clone(), batch, past, t, device);
        // Queries of a chunk without segment ids belong to segment 0, like unlabeled history.
        let segments = self.segments.as_ref().map(|keys| {
            let queries = layout
                .segments
                .clone()
                .unwrap_or_else(|| Tensor::<2, Int>::zeros([batch, t], device));
            (queries, keys.clone())
        });
        // Attention runs over the layers' whole buffers; the mask hides the steps after the
        // filled ones (the causal mask already does, relative to each query).
        let keys = self.layers.first().map_or(past + t, |layer| layer.capacity_for(past + t));
        let mask = self_attention_mask_over(
            causal,
            t,
            past,
            keys,
            self.padding.as_ref(),
            segments.as_ref().map(|(q, k)| (q, k)),
            device,
        );
        self.len += t;
        (positions, mask)
    }
}

/// `select` on rows of a bool tensor, through ints: burn-flex 0.22.1 returns a `U8` tensor from
/// a bool `select`, which a later `cat` with a real bool tensor rejects ("dtype mismatch").
pub(crate) fn select_bool_rows(mask: Tensor<2, Bool>, rows: Tensor<1, Int>) -> Tensor<2, Bool> {
    mask.int().select(0, rows).bool()
}

/// Appends a `[B, t]` chunk of optional per-token data to optional `[B, past]` history,
/// filling whichever side is missing with zeros (`false`, segment 0) so both stay aligned
/// with the keys.
fn extend<K: burn::tensor::kind::Basic>(
    past_data: Option<Tensor<2, K>>,
    new_data: Option<Tensor<2, K>>,
    batch: usize,
    past: usize,
    t: usize,
    device: &Device,
) -> Option<Tensor<2, K>> {
    let fill = |shape: [usize; 2], device: &Device| Tensor::<2, K>::zeros(shape, device);
    match (past_data, new_data) {
        (None, None) => None,
        (Some(p), None) => Some(Tensor::cat(vec![p, fill([batch, t], device)], 1)),
        (None, Some(n)) if past == 0 => Some(n),
        (None, Some(n)) => Some(Tensor::cat(vec![fill([batch, past], device), n], 1)),
        (Some(p), Some(n)) => Some(Tensor::cat(vec![p, n], 1)),
    }
}
