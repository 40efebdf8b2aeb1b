//! A model run by ONNX Runtime (loaded at run time from its shared library): the exported
//! graph in two sessions, one with every unit's diagnostics as outputs and one without,
//! so that a request that does not ask for them does not pay for them.
//!
//! Results come back as plain values, not libtorch tensors: any libtorch operation on the
//! serving path may wake libtorch's own thread pool, whose spinning threads then compete
//! with ONNX Runtime's for the same cores (measured: 5.2 ms became 8.7 ms at batch 64 when
//! every output went through libtorch tensors); the out-of-distribution scores read them as
//! they are (`ood::Pooled`).

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use super::export::{export, unit_output, FEATURES, INPUT, LOGITS, PROBABILITIES, STAGE_FEATURES, UNIT_OUTPUTS};
use super::OnnxError;
use crate::nn::{ForwardValues, Model, ShrinkUnit, UnitValues};

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` (once per process; later calls return the first
/// outcome) with one intra-op thread pool of `threads` threads that every session shares,
/// as libtorch's is shared by every model.
pub fn init(library: &Path, threads: usize) -> Result<(), OnnxError> {
    let environment = ENVIRONMENT.get_or_init(|| {
        // First: any other call into `ort` would load a library of its own choosing.
        let builder = ort::init_from(library).map_err(|e| format!("cannot load {}: {e}", library.display()))?;
        let pool = GlobalThreadPoolOptions::default()
            .with_intra_threads(threads.max(1))
            .and_then(|p| p.with_inter_threads(1))
            .map_err(|e| e.to_string())?;
        builder.with_name("drsn").with_telemetry(false).with_global_thread_pool(pool).build().map_err(|e| e.to_string())
    });
    environment.as_ref().map(|_| ()).map_err(|e| OnnxError::Runtime(e.clone()))
}

/// [`init`] with the library the environment variable `DRSN_ONNXRUNTIME_LIB` names (set by
/// `scripts/libtorch.sh`; `drsn serve` reads it as `--onnxruntime-lib`), as the tests and
/// benchmarks load it.
pub fn init_from_env(threads: usize) -> Result<(), OnnxError> {
    let library = std::env::var_os("DRSN_ONNXRUNTIME_LIB").ok_or_else(|| {
        OnnxError::Runtime(
            "DRSN_ONNXRUNTIME_LIB is not set: it names libonnxruntime.so (eval \"$(bash scripts/libtorch.sh)\" sets it)"
                .into(),
        )
    })?;
    init(Path::new(&library), threads)
}

/// Whether [`init`] has loaded ONNX Runtime.
pub fn loaded() -> bool {
    matches!(ENVIRONMENT.get(), Some(Ok(_)))
}

fn environment() -> Result<&'static Environment, OnnxError> {
    match ENVIRONMENT.get() {
        Some(Ok(env)) => Ok(env),
        Some(Err(e)) => Err(OnnxError::Runtime(e.clone())),
        None => Err(OnnxError::Runtime("ONNX Runtime was not loaded (onnx::init)".into())),
    }
}

/// One model in ONNX Runtime.
pub struct OnnxModel {
    plain: Session,
    diagnostic: Session,
    units: Vec<ShrinkUnit>,
    sample_shape: Vec<i64>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("sample_shape", &self.sample_shape).finish()
    }
}

impl OnnxModel {
    /// Exports `model`'s network with its current weights and opens it in ONNX Runtime
    /// (after [`init`]).
    pub fn new(model: &Model) -> Result<Self, OnnxError> {
        let (plain, _) = export(model, false)?;
        let (diagnostic, units) = export(model, true)?;
        Ok(OnnxModel {
            plain: session(&plain)?,
            diagnostic: session(&diagnostic)?,
            units,
            sample_shape: model.spec().sample_shape(),
        })
    }

    /// Runs `n` windows (`inputs` row-major, `n x` the sample shape).
    pub fn infer(&mut self, inputs: &[f32], n: usize, diagnostics: bool) -> Result<ForwardValues, OnnxError> {
        let per_window: i64 = self.sample_shape.iter().product();
        if n == 0 || inputs.len() as i64 != per_window * n as i64 {
            return Err(OnnxError::Input(format!("{} values for {n} windows of {per_window}", inputs.len())));
        }
        let mut shape = vec![n as i64];
        shape.extend(&self.sample_shape);
        let input = TensorRef::from_array_view((shape, inputs)).map_err(runtime)?;
        let session = if diagnostics { &mut self.diagnostic } else { &mut self.plain };
        let outputs = session.run(ort::inputs![INPUT => input]).map_err(runtime)?;
        let units = if diagnostics {
            let unit = |u: &ShrinkUnit| {
                let [thresholds, scales, mean_abs, zeroed_fraction] =
                    UNIT_OUTPUTS.map(|what| values(&outputs, &unit_output(&u.name, what)));
                Ok(UnitValues {
                    unit: u.clone(),
                    thresholds: thresholds?,
                    scales: scales?,
                    mean_abs: mean_abs?,
                    zeroed_fraction: zeroed_fraction?,
                })
            };
            self.units.iter().map(unit).collect::<Result<_, OnnxError>>()?
        } else {
            Vec::new()
        };
        Ok(ForwardValues {
            windows: n,
            probabilities: values(&outputs, PROBABILITIES)?,
            logits: values(&outputs, LOGITS)?,
            features: values(&outputs, FEATURES)?,
            stage_features: values(&outputs, STAGE_FEATURES)?,
            units,
        })
    }
}

fn session(graph: &[u8]) -> Result<Session, OnnxError> {
    let builder = Session::builder(environment()?).map_err(runtime)?;
    let mut builder = builder.with_optimization_level(GraphOptimizationLevel::All).map_err(|e| runtime(e.into()))?;
    builder.commit_from_memory(graph).map_err(runtime)
}

fn values(outputs: &SessionOutputs<'_>, name: &str) -> Result<Vec<f32>, OnnxError> {
    let value = outputs.get(name).ok_or_else(|| OnnxError::Runtime(format!("no output {name}")))?;
    let (_, values) = value.try_extract_tensor::<f32>().map_err(runtime)?;
    Ok(values.to_vec())
}

fn runtime(e: ort::Error) -> OnnxError {
    OnnxError::Runtime(e.to_string())
}
