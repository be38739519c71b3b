//! Attention masks: causal, padding and packed-segment masks, combined into one boolean tensor.
//!
//! Convention (burn's): `true` means "this key is hidden from this query". A query that sees no
//! key at all (a padding query) gets a zero output from burn's attention, never NaN.

use burn::prelude::*;

/// What one attention call may see.
#[derive(Clone, Debug)]
pub(crate) struct AttnMask {
    /// Hide keys after the query (bottom-right aligned when there are more keys than queries,
    /// which is what continuing from a cache needs). Only used when `explicit` is `None`.
    pub causal: bool,
    /// `[B, 1, Tq, Tk]`, the full mask (causal part included) when padding or segments exist.
    pub explicit: Option<Tensor<4, Bool>>,
}

/// Mask for self-attention of `tq` new queries over `past + tq` keys.
///
/// `key_padding` and `key_segments` cover all `past + tq` keys; `query_segments` covers the
/// new queries. Without padding and segments the cheap `is_causal` flag is used.
pub(crate) fn self_attention_mask(
    causal: bool,
    tq: usize,
    past: usize,
    key_padding: Option<&Tensor<2, Bool>>,
    segments: Option<(&Tensor<2, Int>, &Tensor<2, Int>)>,
    device: &Device,
) -> AttnMask {
    let tk = past + tq;
    if key_padding.is_none() && segments.is_none() {
        return AttnMask { causal, explicit: None };
    }
    let batch = key_padding
        .map(|p| p.dims()[0])
        .or(segments.map(|(q, _)| q.dims()[0]))
        .unwrap_or(1);
    let shape = [batch, 1, tq, tk];
    let mut parts: Vec<Tensor<4, Bool>> = Vec::new();
    if causal {
        let future = Tensor::<2, Bool>::tril_mask([tq, tk], past as i64, device);
        parts.push(future.reshape([1, 1, tq, tk]).expand(shape));
    }
    if let Some(pad) = key_padding {
        parts.push(pad.clone().reshape([batch, 1, 1, tk]).expand(shape));
    }
    if let Some((query_seg, key_seg)) = segments {
        let q = query_seg.clone().reshape([batch, 1, tq, 1]).expand(shape);
        let k = key_seg.clone().reshape([batch, 1, 1, tk]).expand(shape);
        parts.push(q.not_equal(k));
    }
    let mask = parts.into_iter().reduce(|a, b| a.bool_or(b));
    AttnMask { causal, explicit: mask }
}

/// [`self_attention_mask`] over `keys >= past + tq` key slots, of which only the first
/// `past + tq` hold keys (a KV-cache buffer with room to spare): the rest are always hidden.
pub(crate) fn self_attention_mask_over(
    causal: bool,
    tq: usize,
    past: usize,
    keys: usize,
    key_padding: Option<&Tensor<2, Bool>>,
    segments: Option<(&Tensor<2, Int>, &Tensor<2, Int>)>,
    device: &Device,
) -> AttnMask {
    let filled = past + tq;
    if keys <= filled {
        return self_attention_mask(causal, tq, past, key_padding, segments, device);
    }
    let spare = keys - filled;
    let batch = key_padding.map(|p| p.dims()[0]).or(segments.map(|(q, _)| q.dims()[0])).unwrap_or(1);
    // Padding over every slot: the given padding, then `true` for the spare slots. Without
    // padding, one row broadcasts over the batch.
    let (pad_rows, pad) = match key_padding {
        Some(pad) => {
            let tail = Tensor::<2, Bool>::from_bool(TensorData::new(vec![true; batch * spare], [batch, spare]), device);
            (batch, Tensor::cat(vec![pad.clone(), tail], 1))
        }
        None => {
            let row: Vec<bool> = (0..keys).map(|j| j >= filled).collect();
            (1, Tensor::<2, Bool>::from_bool(TensorData::new(row, [1, keys]), device))
        }
    };
    let shape = [batch, 1, tq, keys];
    let mut mask = pad.reshape([pad_rows, 1, 1, keys]).expand(shape);
    if causal {
        let future = Tensor::<2, Bool>::tril_mask([tq, keys], past as i64, device);
        mask = mask.bool_or(future.reshape([1, 1, tq, keys]).expand(shape));
    }
    if let Some((query_seg, key_seg)) = segments {
        let key_seg = Tensor::cat(vec![key_seg.clone(), Tensor::<2, Int>::zeros([batch, spare], device)], 1);
        let q = query_seg.clone().reshape([batch, 1, tq, 1]).expand(shape);
        let k = key_seg.reshape([batch, 1, 1, keys]).expand(shape);
        mask = mask.bool_or(q.not_equal(k));
    }
    AttnMask { causal, explicit: Some(mask) }
}

/// Mask for cross-attention of `tq` queries over the source, hiding source padding.
pub(crate) fn cross_attention_mask(tq: usize, source_padding: Option<&Tensor<2, Bool>>) -> AttnMask {
    let explicit = source_padding.map(|pad| {
        let [b, tk] = pad.dims();
        pad.clone().reshape([b, 1, 1, tk]).expand([b, 1, tq, tk])
    });
    AttnMask { causal: false, explicit }
}
