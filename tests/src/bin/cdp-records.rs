//! `cdp-records N [SEED]`: writes N generated CDP records as CSV to stdout (see
//! `braid_tests::cdp`), for `scripts/bench-resolve.sh`.

use std::io::Write as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(Ok(records)) = args.next().map(|n| n.parse::<usize>()) else {
        eprintln!("usage: cdp-records RECORDS [SEED]");
        std::process::exit(2);
    };
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let csv = braid_tests::cdp::records(records, seed);
    if std::io::stdout().lock().write_all(csv.as_bytes()).is_err() {
        std::process::exit(1);
    }
}
