//! `portcullis report`: access-log lines in, one self-contained HTML page out, with charts over
//! time of requests and server errors per route, latency percentiles, refusals by reason and the
//! top consumers, and tables of each.

mod html;
mod read;
mod stats;

use std::io::Read as _;

/// What `report` was asked.
#[derive(Debug, Default, PartialEq)]
struct Options {
    /// Files to read; `-` or none is standard input.
    inputs: Vec<String>,
    out: Option<String>,
    bucket_s: Option<u64>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-o" | "--out" => o.out = Some(value()?.clone()),
            "--bucket" => {
                let v = value()?;
                let s = v.parse().ok().filter(|s| *s > 0);
                o.bucket_s = Some(s.ok_or(format!("--bucket {v:?} is not a number of seconds"))?);
            }
            flag if flag.starts_with('-') && flag != "-" => {
                return Err(format!("unknown option {flag:?}"));
            }
            file => o.inputs.push(file.to_string()),
        }
    }
    Ok(o)
}

/// Runs `portcullis report [FILE|-]... [-o OUT] [--bucket SECONDS]`. `Err(usage)` for bad
/// arguments, `Ok(Err(message))` for inputs that cannot be read or hold no access line.
pub fn run(args: &[String]) -> Result<Result<(), String>, String> {
    let o = options(args)?;
    Ok(report(&o))
}

fn report(o: &Options) -> Result<(), String> {
    let stdin = ["-".to_string()];
    let inputs = if o.inputs.is_empty() {
        &stdin[..]
    } else {
        &o.inputs
    };
    let mut found = read::Read::default();
    for input in inputs {
        let mut bytes = Vec::new();
        let got = if input == "-" {
            std::io::stdin().read_to_end(&mut bytes)
        } else {
            std::fs::File::open(input).and_then(|mut f| f.read_to_end(&mut bytes))
        };
        got.map_err(|e| format!("cannot read {input}: {e}"))?;
        // a line cut in the middle of a character is still read, around it
        let one = read::read(&String::from_utf8_lossy(&bytes));
        found.lines.extend(one.lines);
        found.other_events += one.other_events;
        found.not_json += one.not_json;
    }
    let names = inputs
        .iter()
        .map(|i| if i == "-" { "standard input" } else { i });
    let source = format!(
        "{} access-log lines from {} ({} other events and {} lines that are not JSON left out)",
        found.lines.len(),
        names.collect::<Vec<_>>().join(", "),
        found.other_events,
        found.not_json,
    );
    let stats = stats::stats(&found.lines, o.bucket_s).map_err(|e| format!("{e}: {source}"))?;
    let page = html::page(&stats, &source)?;
    eprintln!("report: {source}");
    match &o.out {
        Some(out) => std::fs::write(out, page).map_err(|e| format!("cannot write {out}: {e}")),
        None => {
            print!("{page}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_options() {
        let o = options(&args("a.log - b.log -o out.html --bucket 60")).unwrap();
        assert_eq!(
            o,
            Options {
                inputs: args("a.log - b.log"),
                out: Some("out.html".into()),
                bucket_s: Some(60),
            }
        );
        for (bad, want) in [
            ("--bucket", "--bucket needs a value"),
            ("--bucket 0", "--bucket \"0\" is not a number of seconds"),
            ("--bucket x", "--bucket \"x\" is not a number of seconds"),
            ("--html", "unknown option \"--html\""),
        ] {
            assert_eq!(options(&args(bad)).unwrap_err(), want);
        }
    }
}
