//! `lake run`: the daily job in one idempotent command.
//!
//! A run is the incremental pipeline in order: append the drops given (each exactly once, so a
//! drop already in bronze is skipped), refresh silver from the new bronze versions, refresh gold
//! for the lake's cutoffs ([`crate::ops::gold::CUTOFFS_PROPERTY`]), and, when asked, train a
//! model on the new gold version and score the present with it. Every step is one of the
//! operations a user can run alone, each idempotent and committed on its own: a second run with
//! nothing new does nothing and says so, and a run that fails at a step leaves the steps before
//! it committed, so the rerun continues from there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::catalog::{GOLD_FEATURES, TableId};
use crate::error::{Error, Result, display_chain};
use crate::lake::{Lakehouse, operation};
use crate::ml::{AUTO_MIN_LEAF, Params, read_manifest};
use crate::ops::append::DropStatus;
use crate::ops::gold::Cutoffs;

/// A step of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Land the drops in bronze.
    Append,
    /// Refresh silver from bronze.
    Silver,
    /// Refresh gold from silver.
    Gold,
    /// Train a model on the latest gold version.
    Train,
    /// Score the present with that model.
    Score,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It committed new work.
    Done,
    /// There was nothing new for it to do.
    UpToDate,
    /// Not asked for (no drops given, no --train), or not reached after a failure.
    Skipped,
    /// It failed (see the run's failure); with keep-going, an append whose sound drops landed.
    Failed,
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step.
    pub step: Step,
    /// How it ended.
    pub status: StepStatus,
    /// Wall time.
    pub seconds: f64,
    /// The step's own report (the one its command prints with --json).
    pub detail: serde_json::Value,
}

/// Why a run failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step that failed.
    pub step: Step,
    /// The error and its causes.
    pub message: String,
    /// True when the input data is at fault (a corrupt drop, a failed expectation): rerunning
    /// will not help until the data is fixed.
    pub bad_input: bool,
}

/// What `lake run` did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// True when every step asked for succeeded.
    pub ok: bool,
    /// True when some step committed new work (false: everything was up to date).
    pub did_work: bool,
    /// The steps, in order.
    pub steps: Vec<StepReport>,
    /// The failure, when a step failed.
    pub error: Option<Failure>,
}

/// Training as part of a run.
#[derive(Debug, Clone)]
pub struct TrainStep {
    /// Model parameters.
    pub params: Params,
    /// The model directory (replaced when gold has a new version).
    pub out: PathBuf,
}

/// A step starting or ending, for logs and progress.
#[derive(Debug, Clone)]
pub enum RunEvent<'a> {
    /// A step starts.
    Started(Step),
    /// A step ended.
    Finished(&'a StepReport),
}

type Observer = Arc<dyn Fn(RunEvent<'_>) + Send + Sync>;

/// Builder of `lake run` (see [`Lakehouse::run`]).
pub struct RunBuilder {
    lake: Lakehouse,
    drops: Vec<String>,
    keep_going: bool,
    cutoffs: Option<Cutoffs>,
    train: Option<TrainStep>,
    score: Option<PathBuf>,
    observer: Option<Observer>,
}

impl Lakehouse {
    /// The daily job: append `drops` (none: start at silver), refresh silver and gold, and
    /// optionally train and score (see the [module](crate::pipeline)).
    pub fn run<I, S>(&self, drops: I) -> RunBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RunBuilder {
            lake: self.clone(),
            drops: drops.into_iter().map(Into::into).collect(),
            keep_going: false,
            cutoffs: None,
            train: None,
            score: None,
            observer: None,
        }
    }
}

impl RunBuilder {
    /// Let the sound drops land and the later steps run when a drop fails (the run still
    /// reports the failure).
    pub fn with_keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }

    /// Gold's cutoffs for this run (default: the lake's setting, else the latest).
    pub fn with_cutoffs(mut self, cutoffs: Option<Cutoffs>) -> Self {
        self.cutoffs = cutoffs;
        self
    }

    /// Train a model on the new gold version (skipped when the model directory already holds a
    /// model of this version with these parameters).
    pub fn with_train(mut self, train: Option<TrainStep>) -> Self {
        self.train = train;
        self
    }

    /// Score the present with the model in this directory (with training: the new model).
    pub fn with_score(mut self, model_dir: Option<PathBuf>) -> Self {
        self.score = model_dir;
        self
    }

    /// Called as each step starts and ends.
    pub fn with_observer(mut self, f: impl Fn(RunEvent<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    async fn execute(self) -> Result<RunReport> {
        let mut run = Run {
            report: RunReport {
                ok: true,
                did_work: false,
                steps: Vec::new(),
                error: None,
            },
            stop: false,
            observer: self.observer.clone(),
        };
        let lake = &self.lake;
        let steps = [
            Step::Append,
            Step::Silver,
            Step::Gold,
            Step::Train,
            Step::Score,
        ];
        for step in steps {
            let asked = match step {
                Step::Append => !self.drops.is_empty(),
                Step::Silver | Step::Gold => true,
                Step::Train => self.train.is_some(),
                Step::Score => self.score.is_some(),
            };
            if !asked || run.stopped() {
                run.skip(step);
                continue;
            }
            run.start(step);
            let started = Instant::now();
            let outcome = match step {
                Step::Append => self.append().await,
                Step::Silver => silver(lake).await,
                Step::Gold => gold(lake, self.cutoffs.clone()).await,
                Step::Train => train(lake, self.train.as_ref().expect("asked")).await,
                Step::Score => score(lake, self.score.as_ref().expect("asked")).await,
            };
            run.finish(step, started, outcome);
        }
        Ok(run.report)
    }

    async fn append(&self) -> Result<Outcome> {
        let report = self
            .lake
            .append(self.drops.clone())
            .with_keep_going(self.keep_going)
            .await?;
        let failed: Vec<_> = report
            .drops
            .iter()
            .filter(|d| d.status == DropStatus::Failed)
            .collect();
        let failure = failed.first().map(|first| Failure {
            step: Step::Append,
            message: format!(
                "{} of {} drops failed, the first: {}",
                failed.len(),
                report.drops.len(),
                first.error.as_deref().unwrap_or("unknown error")
            ),
            bad_input: failed.iter().all(|d| d.bad_input),
        });
        Ok(Outcome {
            done: report.added > 0,
            detail: to_json(&report)?,
            // Without keep-going, a failed drop stops the run here.
            failure,
            stop: !self.keep_going,
        })
    }
}
operation!(RunBuilder => RunReport);

/// A step's result when its operation returned.
struct Outcome {
    done: bool,
    detail: serde_json::Value,
    /// A failure the operation reported without failing (an append's failed drops).
    failure: Option<Failure>,
    /// Whether that failure stops the run.
    stop: bool,
}

/// A run in progress.
struct Run {
    report: RunReport,
    /// A step failed in a way that stops the run.
    stop: bool,
    observer: Option<Observer>,
}

impl Run {
    /// True once a step failed in a way that stops the run.
    fn stopped(&self) -> bool {
        self.stop
    }

    fn start(&self, step: Step) {
        tracing::info!(step = ?step, "step started");
        if let Some(f) = &self.observer {
            f(RunEvent::Started(step));
        }
    }

    fn skip(&mut self, step: Step) {
        self.push(StepReport {
            step,
            status: StepStatus::Skipped,
            seconds: 0.0,
            detail: serde_json::Value::Null,
        });
    }

    fn finish(&mut self, step: Step, started: Instant, outcome: Result<Outcome>) {
        let seconds = started.elapsed().as_secs_f64();
        let (status, detail) = match outcome {
            Ok(o) => {
                self.report.did_work |= o.done;
                let status = match (&o.failure, o.done) {
                    (Some(_), _) => StepStatus::Failed,
                    (None, true) => StepStatus::Done,
                    (None, false) => StepStatus::UpToDate,
                };
                if let Some(f) = o.failure {
                    self.fail(f, o.stop);
                }
                (status, o.detail)
            }
            Err(e) => {
                self.fail(
                    Failure {
                        step,
                        message: display_chain(&e),
                        bad_input: e.is_bad_input(),
                    },
                    true,
                );
                (StepStatus::Failed, serde_json::Value::Null)
            }
        };
        tracing::info!(step = ?step, status = ?status, seconds, "step finished");
        self.push(StepReport {
            step,
            status,
            seconds,
            detail,
        });
    }

    fn fail(&mut self, failure: Failure, stop: bool) {
        self.report.ok = false;
        self.stop |= stop;
        self.report.error.get_or_insert(failure);
    }

    fn push(&mut self, step: StepReport) {
        if let Some(f) = &self.observer {
            f(RunEvent::Finished(&step));
        }
        self.report.steps.push(step);
    }
}

async fn silver(lake: &Lakehouse) -> Result<Outcome> {
    let report = lake.refresh_silver().await?;
    Ok(Outcome {
        done: report.tables.iter().any(|t| t.version.is_some()),
        detail: to_json(&report)?,
        failure: None,
        stop: false,
    })
}

async fn gold(lake: &Lakehouse, cutoffs: Option<Cutoffs>) -> Result<Outcome> {
    let report = lake.refresh_gold().with_cutoffs(cutoffs).await?;
    let scored = report.scoring.as_ref().is_some_and(|s| s.version.is_some());
    Ok(Outcome {
        done: report.version.is_some() || scored,
        detail: to_json(&report)?,
        failure: None,
        stop: false,
    })
}

async fn train(lake: &Lakehouse, step: &TrainStep) -> Result<Outcome> {
    let id: TableId = GOLD_FEATURES.parse()?;
    let version = lake.current_table(&id).await?.version().unwrap_or(0);
    // The model directory already holds this version's model with these parameters.
    if let Ok(m) = read_manifest(&step.out).await
        && m.snapshot.table == id.to_string()
        && m.snapshot.version == version
        && same_params(&step.params, &m.params)
    {
        return Ok(Outcome {
            done: false,
            detail: json!({ "model_id": m.model_id, "table": m.snapshot.table,
                            "version": version, "dir": step.out }),
            failure: None,
            stop: false,
        });
    }
    let report = lake
        .train()
        .with_params(step.params.clone())
        .with_out(step.out.clone())
        .await?;
    let m = &report.manifest;
    Ok(Outcome {
        done: true,
        detail: json!({ "model_id": m.model_id, "table": m.snapshot.table,
                        "version": m.snapshot.version, "dir": report.dir,
                        "rows": m.rows, "evaluation": m.evaluation }),
        failure: None,
        stop: false,
    })
}

/// True when a model trained with `recorded` (as its manifest holds them, an automatic minimum
/// leaf resolved) is what `requested` would train on the same rows.
fn same_params(requested: &Params, recorded: &Params) -> bool {
    let mut recorded = recorded.clone();
    if requested.min_leaf == AUTO_MIN_LEAF {
        recorded.min_leaf = AUTO_MIN_LEAF;
    }
    &recorded == requested
}

async fn score(lake: &Lakehouse, model_dir: &std::path::Path) -> Result<Outcome> {
    let report = lake.score(model_dir).await?;
    Ok(Outcome {
        done: report.version.is_some(),
        detail: to_json(&report)?,
        failure: None,
        stop: false,
    })
}

fn to_json(value: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::serialize("a run's step report", e))
}
