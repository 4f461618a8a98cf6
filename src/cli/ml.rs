//! `berserkr train`, `berserkr score`, `berserkr model export`.

use std::path::PathBuf;

use berserkr::Lakehouse;
use berserkr::lake::At;
use berserkr::ml::metrics::Metrics;
use berserkr::ml::{ModelKind, Params, read_manifest, read_model};
use clap::{Args, Subcommand, ValueEnum};

use super::{EXIT_BAD_INPUT, EXIT_OK};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Feature table to train on.
    #[arg(long, default_value = berserkr::catalog::GOLD_FEATURES)]
    table: String,
    /// Table version to read (default: latest).
    #[arg(long, conflicts_with = "as_of")]
    version: Option<u64>,
    /// The last version committed at or before this time (RFC 3339, or 'YYYY-MM-DD HH:MM:SS' UTC).
    #[arg(long)]
    as_of: Option<String>,
    /// Learner.
    #[arg(long, value_enum, default_value = "decision-tree")]
    model: ModelArg,
    /// Maximum tree depth (default: 8 for a tree, 12 for a forest, 6 for boosting).
    #[arg(long)]
    max_depth: Option<usize>,
    /// Trees in a forest or booster (default 100 / 200).
    #[arg(long)]
    trees: Option<usize>,
    /// Minimum rows in a leaf (default 1 for a tree, 20 for a forest, 0 for boosting); 0 means one
    /// in 2,000 training rows, at least 20
    #[arg(long)]
    min_leaf: Option<usize>,
    /// Boosting learning rate (default 0.1).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model directory to write.
    #[arg(long, default_value = "model")]
    out: PathBuf,
    /// Retrain from a manifest (its table, version, parameters) and check that the model and
    /// metrics match; --out is where the new run goes.
    #[arg(long, conflicts_with_all = ["version", "as_of", "max_depth", "trees", "min_leaf", "learning_rate"])]
    reproduce: Option<PathBuf>,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelArg {
    DecisionTree,
    RandomForest,
    GradientBoosting,
}

impl ModelArg {
    /// The learner.
    pub fn kind(self) -> ModelKind {
        match self {
            ModelArg::DecisionTree => ModelKind::DecisionTree,
            ModelArg::RandomForest => ModelKind::RandomForest,
            ModelArg::GradientBoosting => ModelKind::GradientBoosting,
        }
    }
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model directory (from `berserkr train`).
    #[arg(long)]
    model: PathBuf,
    /// Only print this customer's most likely purchases (nothing is written).
    #[arg(long)]
    customer: Option<i64>,
    /// How many items to print for --customer.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// A cutoff of the model's training table to score (default: the present, the features of
    /// gold.scoring_features as of the last silver timestamp).
    #[arg(long)]
    cutoff: Option<String>,
    /// Version of the feature table scored (default: latest).
    #[arg(long)]
    version: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model directory (from `berserkr train`); its scores come from gold.purchase_scores.
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Seconds between looks for newer scores.
    #[arg(long, default_value_t = 5)]
    reload_secs: u64,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a trained model in a standard format.
    Export {
        /// Model directory.
        #[arg(long)]
        model: PathBuf,
        /// Format.
        #[arg(long, value_enum, default_value = "pmml")]
        format: ExportFormat,
        /// Output file (default: <model>/model.pmml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// PMML 4.4 (JPMML, Openscoring, PyPMML).
    Pmml,
}

pub(super) fn parse_as_of(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    anyhow::bail!("--as-of {s:?} is not RFC 3339 or 'YYYY-MM-DD[ HH:MM:SS]'")
}

fn metrics_line(name: &str, m: &Metrics) -> String {
    let cells: Vec<String> = m.cells().iter().map(|c| format!("{c:>13}")).collect();
    format!("{name:<11}{}", cells.concat())
}

fn print_manifest(m: &berserkr::ml::Manifest, dir: &std::path::Path, load: f64) {
    let e = &m.evaluation;
    println!(
        "model {} ({}) from {} version {} ({} rows, read in {load:.2} s), fit in {:.2} s",
        m.model_id,
        m.params.model.name(),
        m.snapshot.table,
        m.snapshot.version,
        m.rows,
        m.fit_seconds
    );
    match &m.split {
        berserkr::ml::Split::Time {
            train_cutoffs,
            eval_cutoff,
            skipped_cutoffs,
        } => println!(
            "split: time-based, train on {} cutoff(s), evaluate on {eval_cutoff}{}",
            train_cutoffs.len(),
            if skipped_cutoffs.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} cutoff(s) left out: label window overlaps the evaluation)",
                    skipped_cutoffs.len()
                )
            }
        ),
        berserkr::ml::Split::Stratified {
            test_fraction,
            seed,
            reason,
        } => println!(
            "split: stratified, {:.0}% held out, seed {seed} ({reason})",
            test_fraction * 100.0
        ),
    }
    println!(
        "train {} rows, evaluate {} rows (positive rate {:.3})",
        e.train_rows, e.eval_rows, e.eval_positive_rate
    );
    let heads: Vec<String> = Metrics::HEADINGS
        .iter()
        .map(|h| format!("{h:>13}"))
        .collect();
    println!("{:<11}{}", "scorer", heads.concat());
    println!("{}", metrics_line("model", &e.model));
    println!("{}", metrics_line("popularity", &e.popularity));
    println!("{}", metrics_line("recency", &e.recency));
    if !e.beats_popularity {
        println!("the model does NOT beat the popularity baseline");
    }
    println!("wrote {}", dir.display());
}

pub async fn train(lake: Lakehouse, args: TrainArgs) -> anyhow::Result<u8> {
    if let Some(manifest) = &args.reproduce {
        let r = lake.reproduce(manifest).with_out(&args.out).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&r.report.manifest)?);
        } else {
            print_manifest(&r.report.manifest, &r.report.dir, r.report.load_seconds);
        }
        if r.differences.is_empty() {
            if !args.json {
                println!(
                    "reproduced {}: same snapshot, model bytes (sha256 {}) and metrics",
                    r.original.model_id, r.original.model_sha256
                );
            }
            return Ok(EXIT_OK);
        }
        for d in &r.differences {
            eprintln!("berserkr: not reproduced: {d}");
        }
        return Ok(EXIT_BAD_INPUT);
    }
    let kind = args.model.kind();
    let mut params = Params::defaults(kind);
    params.seed = args.seed;
    if let Some(d) = args.max_depth {
        params.max_depth = d;
    }
    if let Some(t) = args.trees {
        anyhow::ensure!(t > 0, "--trees must be at least 1");
        params.trees = if kind == ModelKind::DecisionTree {
            1
        } else {
            t
        };
    }
    if let Some(m) = args.min_leaf {
        // 0 is AUTO_MIN_LEAF: from the training rows.
        params.min_leaf = m;
    }
    if let Some(l) = args.learning_rate {
        anyhow::ensure!(l > 0.0 && l <= 1.0, "--learning-rate must be in (0, 1]");
        params.learning_rate = l;
    }
    let at = match (args.version, &args.as_of) {
        (Some(v), _) => At::Version(v),
        (None, Some(t)) => At::Time(parse_as_of(t)?),
        (None, None) => At::Latest,
    };
    let report = lake
        .train()
        .with_table(args.table)
        .with_at(at)
        .with_params(params)
        .with_out(&args.out)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.manifest)?);
    } else {
        print_manifest(&report.manifest, &report.dir, report.load_seconds);
    }
    Ok(EXIT_OK)
}

pub async fn score(lake: Lakehouse, args: ScoreArgs) -> anyhow::Result<u8> {
    let mut b = lake.score(&args.model).with_cutoff(args.cutoff);
    if let Some(v) = args.version {
        b = b.with_at(At::Version(v));
    }
    if let Some(c) = args.customer {
        let items = b.top_for_customer(c, args.top).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&items)?);
        } else if items.is_empty() {
            println!("customer {c} has no items at that cutoff");
        } else {
            println!("rank  StockCode   probability");
            for i in &items {
                println!("{:>4}  {:<10} {:>12.4}", i.rank, i.stock_code, i.score);
            }
        }
        return Ok(EXIT_OK);
    }
    let report = b.await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match report.version {
            Some(v) => println!(
                "{:<32} {} rows for {} customers, model {} (trained on {} version {}), cutoff {} of {} version {} (version {v})",
                report.table,
                report.rows,
                report.customers,
                report.model_id,
                report.train_table,
                report.train_version,
                report.cutoff,
                report.source_table,
                report.source_version
            ),
            None => println!(
                "{:<32} up to date: model {} already scored {} version {}",
                report.table, report.model_id, report.source_table, report.source_version
            ),
        }
    }
    Ok(EXIT_OK)
}

pub async fn serve(lake: Lakehouse, args: ServeArgs) -> anyhow::Result<u8> {
    use std::io::Write;
    let server = lake
        .serve(&args.model)
        .with_addr(args.addr)
        .with_reload_interval(std::time::Duration::from_secs(args.reload_secs.max(1)))
        .bind()
        .await?;
    // Whoever started the server may stop reading its output: that must not stop it.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "serving model {} ({} customers scored) on http://{}",
        server.model_id(),
        server.customers(),
        server.local_addr()?
    );
    let _ = writeln!(
        out,
        "  GET /health  GET /customers/{{id}}/top?k=10  POST /score"
    );
    let _ = out.flush();
    server.run().await?;
    Ok(EXIT_OK)
}

pub async fn model(cmd: ModelCommand) -> anyhow::Result<u8> {
    match cmd {
        ModelCommand::Export { model, format, out } => {
            let manifest = read_manifest(&model).await?;
            let m = read_model(&model).await?;
            let ExportFormat::Pmml = format;
            let xml = berserkr::ml::pmml::to_pmml(
                &m,
                &manifest.label.column,
                &format!(
                    "berserkr {} model {} trained on {} version {}",
                    m.kind.name(),
                    manifest.model_id,
                    manifest.snapshot.table,
                    manifest.snapshot.version
                ),
            );
            let out = out.unwrap_or_else(|| model.join("model.pmml"));
            std::fs::write(&out, xml).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(EXIT_OK)
        }
    }
}
