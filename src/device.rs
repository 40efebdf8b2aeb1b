//! Chooses where tensors live. The PyPI libtorch build links CUDA support lazily:
//! `libtorch_cuda.so` must be loaded by hand before CUDA reports itself available.

use std::sync::Once;

use tch::Device;

static LOAD_CUDA: Once = Once::new();

fn load_cuda_library() {
    LOAD_CUDA.call_once(|| {
        // The name is resolved through the binary's rpath (libtorch's lib folder).
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid C string; the handle is intentionally kept open.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            tracing::debug!("libtorch_cuda.so not loaded; CUDA stays unavailable");
        }
    });
}

/// `cpu`, `cuda` (first GPU, failing if none) or `auto` (CUDA when available).
pub fn parse(choice: &str) -> anyhow::Result<Device> {
    match choice {
        "cpu" => Ok(Device::Cpu),
        "cuda" | "auto" => {
            load_cuda_library();
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else if choice == "auto" {
                Ok(Device::Cpu)
            } else {
                anyhow::bail!("--device cuda asked for, but no CUDA device is available")
            }
        }
        other => anyhow::bail!("unknown device {other:?}; expected cpu, cuda or auto"),
    }
}
