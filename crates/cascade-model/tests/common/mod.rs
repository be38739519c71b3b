//! Helpers shared by the integration tests: tiny configs, token tensors, float comparisons.
#![allow(dead_code)]

use burn::prelude::*;

pub fn device() -> Device {
    Device::flex()
}

pub fn tokens(rows: &[&[i64]], device: &Device) -> Tensor<2, Int> {
    let width = rows[0].len();
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([rows.len(), width])
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    to_vec(a).iter().zip(to_vec(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
