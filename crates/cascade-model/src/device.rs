//! Device selection by name, as the runner's `--device` flag spells it.

use burn::prelude::*;

use crate::error::{ModelError, Result};

/// Parses `flex` (alias `cpu`) or `wgpu` (aliases `gpu`, `wgpu:cpu` for wgpu's CPU adapter)
/// into a burn device. `wgpu` needs the crate's `wgpu` feature; without it the error says so.
pub fn parse_device(name: &str) -> Result<Device> {
    match name.trim().to_ascii_lowercase().as_str() {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" | "gpu" | "wgpu:cpu" => wgpu_device(name),
        _ => Err(ModelError::Device {
            name: name.to_string(),
            message: "unknown device; expected `flex` (CPU) or `wgpu`".into(),
        }),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(name: &str) -> Result<Device> {
    let kind = if name.trim().eq_ignore_ascii_case("wgpu:cpu") {
        burn::tensor::DeviceKind::Cpu
    } else {
        burn::tensor::DeviceKind::DefaultDevice
    };
    Ok(Device::wgpu(kind))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(name: &str) -> Result<Device> {
    Err(ModelError::Device {
        name: name.to_string(),
        message: "this build has no wgpu backend; rebuild with `--features cascade-model/wgpu`".into(),
    })
}
