//! What `kiln bench attach` prints: echo quantiles, median throughput and
//! CPU per path, each round's times, and every path's ratio to the anchor.

use std::time::Duration;

use super::super::console::ms;
use super::super::quantile;
use super::{COLS, ROWS, THROUGHPUT_ROUNDS};

/// What one bench run measured, per path in the same order as `names`.
pub(super) struct Measured {
    pub keys: usize,
    pub megabytes: usize,
    /// Bytes of the payload.
    pub bytes: f64,
    pub names: Vec<&'static str>,
    /// Echo times, sorted.
    pub echoes: Vec<Vec<Duration>>,
    /// Throughput runs, in the order of the rounds.
    pub rates: Vec<Vec<Run>>,
    /// tmux alone, per round: bytes per second and tmux CPU ms per MiB.
    pub alone: Vec<(f64, f64)>,
}

struct Numbers {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    bytes_per_sec: f64,
    cpu_ms_per_mb: f64,
    /// CPU of the tmux server behind the path, per MiB.
    tmux_ms_per_mb: f64,
    /// MiB that reached the client in one run.
    received_mib: f64,
}

/// One throughput run of one path.
#[derive(Clone)]
pub(super) struct Run {
    pub(super) bytes_per_sec: f64,
    /// CPU milliseconds per MiB of the relay (and what runs below it), and
    /// of the tmux server.
    pub(super) cpu_ms_per_mib: [f64; 2],
    /// MiB that reached the client.
    pub(super) received_mib: f64,
}

/// Prints the table and the ratios.
pub(super) fn print(measured: Measured) {
    let Measured {
        keys,
        megabytes,
        bytes,
        names,
        echoes,
        rates,
        alone,
    } = measured;
    let results: Vec<(&str, Numbers)> = names
        .iter()
        .zip(echoes.iter().zip(&rates))
        .map(|(name, (samples, rates))| {
            (
                *name,
                Numbers {
                    p50: quantile(samples, 0.5),
                    p90: quantile(samples, 0.9),
                    p99: quantile(samples, 0.99),
                    bytes_per_sec: median(rates.iter().map(|r| r.bytes_per_sec)),
                    cpu_ms_per_mb: median(rates.iter().map(|r| r.cpu_ms_per_mib[0])),
                    tmux_ms_per_mb: median(rates.iter().map(|r| r.cpu_ms_per_mib[1])),
                    received_mib: median(rates.iter().map(|r| r.received_mib)),
                },
            )
        })
        .collect();

    println!(
        "attach: {keys} keystrokes per path (interleaved) and `cat` of {megabytes} MiB (median of {THROUGHPUT_ROUNDS} rounds) in a {COLS}x{ROWS} tmux session running sh (clients on this machine)"
    );
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12} {:>12}",
        "path",
        "echo p50",
        "echo p90",
        "echo p99",
        "MiB/s",
        "CPU ms/MiB",
        "tmux ms/MiB",
        "MiB to client"
    );
    for (name, n) in &results {
        println!(
            "  {:<28} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>11.1} {:>12.1} {:>12.1} {:>12.1}",
            name,
            ms(n.p50),
            ms(n.p90),
            ms(n.p99),
            n.bytes_per_sec / (1 << 20) as f64,
            n.cpu_ms_per_mb,
            n.tmux_ms_per_mb,
            n.received_mib
        );
    }
    let secs = |rate: f64| format!("{:.3}", bytes / rate.max(1e-9));
    let alone_secs: Vec<String> = alone.iter().map(|a| secs(a.0)).collect();
    let alone_tmux = median(alone.iter().map(|a| a.1));
    let alone = median(alone.iter().map(|a| a.0));
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>11.1} {:>12} {:>12.1} {:>12}",
        "tmux alone, no viewer",
        "-",
        "-",
        "-",
        alone / (1 << 20) as f64,
        "-",
        alone_tmux,
        "-"
    );
    // Each round's time, in the order run: a median hides whether a path
    // is steady or sometimes slow.
    for (name, runs) in names.iter().zip(&rates) {
        let each: Vec<String> = runs
            .iter()
            .map(|r| format!("{} ({:.1})", secs(r.bytes_per_sec), r.cpu_ms_per_mib[0]))
            .collect();
        println!(
            "  {name:<28} seconds (CPU ms/MiB) per round: {}",
            each.join(" ")
        );
    }
    println!(
        "  {:<28} seconds per round: {}",
        "tmux alone, no viewer",
        alone_secs.join(" ")
    );
    // Each round's ratio against the anchor's run in the same round, minutes
    // apart at most: slow spells of the machine fall on both sides of it.
    for (name, runs) in names.iter().zip(&rates).skip(1) {
        let ratios = paired_ratios(&rates[0], runs);
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
        println!(
            "  {name:<28} throughput / anchor round by round: {} (median {:.2}x)",
            each.join(" "),
            median(ratios.iter().copied())
        );
    }
    let anchor_n = &results[0].1;
    for (name, n) in &results[1..] {
        println!(
            "  {name} / anchor: echo p50 {:.2}x, p90 {:.2}x, p99 {:.2}x (target <= 1.2x); throughput {:.2}x (target >= 1.0x); CPU/MiB {:.2}x",
            ms(n.p50) / ms(anchor_n.p50).max(1e-9),
            ms(n.p90) / ms(anchor_n.p90).max(1e-9),
            ms(n.p99) / ms(anchor_n.p99).max(1e-9),
            n.bytes_per_sec / anchor_n.bytes_per_sec.max(1e-9),
            n.cpu_ms_per_mb / anchor_n.cpu_ms_per_mb.max(1e-9),
        );
    }
    // Every path's output passes through a tmux server, which parses all of
    // it whoever is watching: its pace with nobody attached bounds them all.
    let shares: Vec<String> = results
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", n.bytes_per_sec / alone.max(1e-9)))
        .collect();
    println!(
        "  throughput / tmux alone (the ceiling of every path): {}",
        shares.join(", ")
    );
    println!(
        "  CPU ms/MiB: the relay (sshd or Kiln) and every process below it, tmux clients included; tmux ms/MiB: the tmux server alone"
    );
}

/// Throughput of `path` over that of `anchor`, round by round.
fn paired_ratios(anchor: &[Run], path: &[Run]) -> Vec<f64> {
    anchor
        .iter()
        .zip(path)
        .map(|(a, p)| p.bytes_per_sec / a.bytes_per_sec.max(1e-9))
        .collect()
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::{Run, median, paired_ratios};

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn ratios_pair_each_round_with_the_anchors_same_round() {
        let run = |bytes_per_sec| Run {
            bytes_per_sec,
            cpu_ms_per_mib: [0.0; 2],
            received_mib: 0.0,
        };
        let anchor = [run(40.0), run(50.0)];
        let path = [run(44.0), run(45.0)];
        let ratios = paired_ratios(&anchor, &path);
        assert_eq!(ratios.len(), 2);
        assert!((ratios[0] - 1.1).abs() < 1e-12 && (ratios[1] - 0.9).abs() < 1e-12);
    }
}
