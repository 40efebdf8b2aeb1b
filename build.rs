//! Embeds libtorch's folder as the binary's rpath, so that `drsn` runs without
//! LD_LIBRARY_PATH, and re-runs when migrations change (they are embedded by sqlx).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build.rs");
    // A deployed copy keeps libtorch's libraries in `lib/` beside the binary (docker/).
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/lib");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // The PyPI (CUDA) build's libtorch_cpu.so needs libcudart/libcupti from the
        // nvidia wheels beside torch/, even on a CPU-only machine.
        let nvidia = std::path::Path::new(&lib).join("../../nvidia");
        for sub in ["cu13/lib", "cuda_runtime/lib", "cuda_cupti/lib"] {
            let dir = nvidia.join(sub);
            if dir.is_dir() {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            }
        }
    }
}
