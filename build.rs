//! Embeds libtorch's folder as the binary's rpath, so that `drsn` runs without
//! LD_LIBRARY_PATH; compiles the C++ half of the CPU training kernels (`src/nn/cpu`)
//! against libtorch's headers; re-runs when migrations change (they are embedded by sqlx).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build.rs");
    // A deployed copy keeps libtorch's libraries in `lib/` beside the binary (docker/).
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/lib");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        compile_autograd(std::path::Path::new(&lib));
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

/// `src/nn/cpu/autograd.cpp`, with the flags torch-sys builds its own C++ with.
fn compile_autograd(lib: &std::path::Path) {
    const SOURCE: &str = "src/nn/cpu/autograd.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    let include = lib.join("../include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file(SOURCE)
        .compile("drsn_cpu_autograd");
}
