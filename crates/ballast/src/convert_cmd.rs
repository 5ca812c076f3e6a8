//! `ballast convert`: an HAProxy or nginx file written as a commented ballast TOML file, to
//! stdout or to `-o FILE`. The translation itself is `ballast_import::convert`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use ballast_import::convert::{ConvertOptions, Converted, convert};

use crate::input::InputArgs;

/// Translate an HAProxy or nginx configuration into a ballast TOML file.
///
/// The output is ballast's own format, which `ballast serve` runs, and means what the input
/// means: the same pools, servers, weights, limits, health checks and timeouts, and each
/// pool's algorithm kept exactly (`emulate`, the foreign algorithm reproduced by `serve` and
/// `simulate`). Every listener, pool and server carries a comment naming the line it came
/// from; directives with no counterpart in ballast are listed at the top, grouped, with their
/// lines. `ballast diff INPUT OUTPUT` shows no change in servers, weights or limits.
///
/// Two things native ballast cannot run are not guessed. The conversion refuses them, naming
/// the option to give:
///   - no listener (an nginx conf.d fragment of upstreams, an HAProxy file of backends only):
///     --listen ADDR gives each pool no listener routes to its own listener, on ADDR's port
///     and the following ones;
///   - a unix-socket server (HAProxy `unix@/run/app.sock`, nginx `unix:/run/app.sock`):
///     ballast connects over TCP only; --map-address unix:/run/app.sock=127.0.0.1:8000
///     names the TCP address to use instead.
///
/// Timeouts longer than a day are written as a day. Each such value is marked STAND-IN in a
/// comment, to be confirmed before serving. A file that proxies nothing (a static site, a
/// stats page) has nothing to convert and is refused.
///
/// Examples:
///   ballast convert /etc/haproxy/haproxy.cfg > ballast.toml
///   ballast convert nginx.conf -o ballast.toml && ballast diff nginx.conf ballast.toml
///   ballast convert conf.d/upstreams.conf --context http --listen 127.0.0.1:8080 -o lb.toml
///   ballast convert haproxy.cfg --map-address unix:/run/app.sock=127.0.0.1:8000 -o lb.toml
///   ballast convert haproxy.cfg -o lb.toml --force          # replace an existing lb.toml
///
/// Exit codes: 0 converted, 2 when the input cannot be read or parsed, or cannot be converted
/// without an option (the message says which), or the output file exists without --force.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ConvertArgs {
    /// The HAProxy or nginx configuration to translate.
    file: PathBuf,
    /// The format to write; ballast's TOML is the one there is.
    #[arg(long, value_enum, default_value_t = Target::Ballast)]
    to: Target,
    /// Write to this file instead of stdout (refused when it exists, unless --force).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace the -o file when it exists.
    #[arg(long, requires = "output")]
    force: bool,
    /// Give every pool that no listener routes to a listener: the first on ADDR, the next
    /// ones on the following ports (needed when the file has no listener at all).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Replace a server address, as the refusal names it, with a HOST:PORT (repeatable):
    /// how a unix-socket server gets the TCP address ballast connects to.
    #[arg(long, value_name = "FROM=TO", value_parser = parse_mapping)]
    map_address: Vec<(String, String)>,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// ballast's own TOML configuration.
    Ballast,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.rsplit_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not FROM=TO; write it like unix:/run/app.sock=127.0.0.1:8000"
        )),
    }
}

pub fn run(args: ConvertArgs) -> u8 {
    let Target::Ballast = args.to;
    if let Some(out) = &args.output
        && !args.force
        && out.exists()
    {
        eprintln!(
            "error: {} exists; give --force to replace it, or another -o",
            out.display()
        );
        return 2;
    }
    if let Some(out) = &args.output
        && same_file(out, &args.file)
    {
        eprintln!(
            "error: -o {} is the input file; write the translation beside it, such as -o ballast.toml",
            out.display()
        );
        return 2;
    }
    let imported = match args.input.load(&args.file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}", e.render().trim_end());
            return 2;
        }
    };
    let options = ConvertOptions {
        listen: args.listen,
        map_address: args.map_address.clone(),
        output_name: args.output.as_ref().map(|p| p.display().to_string()),
    };
    let converted = match convert(&imported, &options) {
        Ok(c) => c,
        Err(problems) => {
            let source = Some(&imported.loaded.source);
            for d in &problems {
                eprintln!("{}", d.render(source).trim_end());
            }
            eprintln!(
                "error: {} was not converted ({} problem{})",
                args.file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            return 2;
        }
    };
    match &args.output {
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(converted.text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => {}
                // The reader stopped (`| head`): nothing more to say.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return 0,
                Err(e) => {
                    eprintln!("error: cannot write the output: {e}");
                    return 2;
                }
            }
        }
        Some(path) => {
            if let Err(e) = write_file(path, &converted.text, args.force) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return 2;
            }
        }
    }
    eprintln!("{}", report(&args.file, args.output.as_deref(), &converted));
    0
}

/// Whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes through a temporary file in the same directory, so a reader never sees half a
/// file; without `force` an existing file is never replaced, even one created meanwhile.
fn write_file(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.flush()?;
    if force {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    Ok(())
}

/// One line on stderr: what was written, and what needs a look.
fn report(input: &Path, output: Option<&Path>, c: &Converted) -> String {
    let s = &c.summary;
    let mut line = format!(
        "converted {} → {}: {} listener{}, {} pool{}, {} server{}",
        input.display(),
        output.map_or_else(|| "stdout".into(), |p| p.display().to_string()),
        s.listeners,
        plural(s.listeners),
        s.pools,
        plural(s.pools),
        s.servers,
        plural(s.servers),
    );
    if s.not_translated > 0 {
        line.push_str(&format!(
            "; {} directive{} not translated (listed at the top)",
            s.not_translated,
            plural(s.not_translated)
        ));
    }
    let stand_ins = s.added_listeners + s.mapped_addresses + s.capped_timeouts;
    if stand_ins > 0 {
        line.push_str(&format!(
            "; {stand_ins} STAND-IN value{} to confirm",
            plural(stand_ins)
        ));
    }
    line
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
