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

/// `src/nn/cpu/autograd.cpp`, with the flags torch-sys builds its own C++ with, and OpenMP:
/// libtorch's `at::parallel_for` is a header template whose threads are an OpenMP pragma,
/// so without it every "parallel" loop runs on one thread. It links to libtorch's own
/// `libgomp.so.1` (one OpenMP runtime and thread pool in the process, not two).
fn compile_autograd(lib: &std::path::Path) {
    const SOURCE: &str = "src/nn/cpu/autograd.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    // The variables torch-sys reads for the same purposes, with its defaults.
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let root = std::env::var_os("LIBTORCH_INCLUDE").map(std::path::PathBuf::from).unwrap_or_else(|| lib.join(".."));
    let include = root.join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-fopenmp")
        .file(SOURCE)
        .compile("drsn_cpu_autograd");
    // `libgomp.so.1`, or `libgomp-<hash>.so.1` in some wheels.
    let bundled = std::fs::read_dir(lib).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libgomp") && n.contains(".so"))
    });
    match bundled {
        Some(gomp) => println!("cargo:rustc-link-arg={}", gomp.display()),
        None => println!("cargo:rustc-link-lib=dylib=gomp"),
    }
}
