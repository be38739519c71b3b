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

/// Mask for cross-attention of `tq` queries over the source, hiding source padding.
pub(crate) fn cross_attention_mask(tq: usize, source_padding: Option<&Tensor<2, Bool>>) -> AttnMask {
    let explicit = source_padding.map(|pad| {
        let [b, tk] = pad.dims();
        pad.clone().reshape([b, 1, 1, tk]).expand([b, 1, tq, tk])
    });
    AttnMask { causal: false, explicit }
}
