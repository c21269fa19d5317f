//! Log output: text (coloured only on a terminal) or one JSON object per
//! line, `log.fields` on every line, and the access log (one line per
//! request, target [`api::ACCESS_LOG_TARGET`]) switchable. actix-server's
//! start-up lines are kept to warnings, and openraft's ERROR per failed RPC
//! to a peer is dropped ([`peer_rpc_error`]), so a normal restart logs no
//! error.

use std::fmt;
use std::io::IsTerminal;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines look (`log.formatter`, `log.fields`, `log.accesslog`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub json: bool,
    /// Added to every line, in this order.
    pub fields: Vec<(String, String)>,
    pub access_log: bool,
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat {
            json: false,
            fields: Vec::new(),
            access_log: true,
        }
    }
}

/// The filter for `level`: `RUST_LOG` wins when set.
pub fn filter(level: &str, format: &LogFormat) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let access = if format.access_log { level } else { "off" };
        tracing_subscriber::EnvFilter::new(format!(
            "{level},sled=warn,openraft=warn,actix_server=warn,{}={access}",
            api::ACCESS_LOG_TARGET
        ))
    })
}

/// openraft logs every failed RPC to a peer as an ERROR: in replication a
/// WARN with the error and then an ERROR "RPCError" (a field named `err`),
/// and in elections "while requesting vote" or "timeout" (fields `target`
/// and `error`). A peer that restarts or is down is normal in a cluster, so
/// these are dropped: each node logs once when a peer stops and starts
/// answering (`raft::quorum_watch`), and `registry_cluster_rpc_errors_total`
/// counts every failure. openraft's storage errors (field `error` alone)
/// stay ERRORs.
pub fn peer_rpc_error(meta: &tracing::Metadata<'_>) -> bool {
    if *meta.level() != tracing::Level::ERROR {
        return false;
    }
    let has = |name: &str| meta.fields().field(name).is_some();
    match meta.target() {
        "openraft::replication" => has("err"),
        "openraft::core::raft_core" => has("target") && has("error"),
        _ => false,
    }
}

/// Installs the global subscriber writing to stdout.
pub fn init(level: &str, format: &LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry};
    let fields = format.fields.clone();
    let output: Box<dyn Layer<Registry> + Send + Sync> = if format.json {
        let inner = Format::default()
            .json()
            .flatten_event(true)
            .with_target(false);
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(WithFields {
                    inner,
                    fields,
                    json: true,
                }),
        )
    } else {
        let ansi = std::io::stdout().is_terminal();
        let inner = Format::default().with_target(false).with_ansi(ansi);
        Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .event_format(WithFields {
                    inner,
                    fields,
                    json: false,
                }),
        )
    };
    let keep = tracing_subscriber::filter::filter_fn(|meta| !peer_rpc_error(meta));
    tracing_subscriber::registry()
        .with(output.with_filter(filter(level, format)).with_filter(keep))
        .init();
}

/// A formatter that adds fixed fields to what `inner` writes: inside the
/// JSON object, or as `key=value` pairs at the end of a text line.
struct WithFields<F> {
    inner: F,
    fields: Vec<(String, String)>,
    json: bool,
}

impl<F> WithFields<F> {
    fn decorate(&self, line: &str, out: &mut Writer<'_>) -> fmt::Result {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if self.fields.is_empty() {
            return writeln!(out, "{line}");
        }
        if self.json {
            let mut extra = String::new();
            for (key, value) in &self.fields {
                let key = serde_json::to_string(key).map_err(|_| fmt::Error)?;
                let value = serde_json::to_string(value).map_err(|_| fmt::Error)?;
                extra.push_str(&format!("{key}:{value},"));
            }
            match line.strip_prefix('{') {
                Some(rest) if rest != "}" => writeln!(out, "{{{extra}{rest}"),
                Some(_) => writeln!(out, "{{{}}}", extra.trim_end_matches(',')),
                None => writeln!(out, "{line}"),
            }
        } else {
            write!(out, "{line}")?;
            for (key, value) in &self.fields {
                write!(out, " {key}={value}")?;
            }
            writeln!(out)
        }
    }
}

impl<S, N> FormatEvent<S, N> for WithFields<Format<Full>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The level and time keep their colours (the inner format's own
        // `ansi` setting); field names are written plain.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let mut out = out;
        self.decorate(&line, &mut out)
    }
}

impl<S> FormatEvent<S, JsonFields> for WithFields<Format<Json>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let mut out = out;
        self.decorate(&line, &mut out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decorated(json: bool, line: &str) -> String {
        let with = WithFields {
            inner: (),
            fields: vec![
                ("env".into(), "prod".into()),
                ("zone".into(), "a\"b".into()),
            ],
            json,
        };
        let mut out = String::new();
        with.decorate(line, &mut Writer::new(&mut out)).unwrap();
        out
    }

    #[test]
    fn fields_join_every_line_in_either_format() {
        let json = decorated(true, "{\"level\":\"INFO\",\"message\":\"hi\"}\n");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["env"], "prod");
        assert_eq!(parsed["zone"], "a\"b");
        assert_eq!(parsed["message"], "hi");
        assert_eq!(
            decorated(false, "INFO hi\n"),
            "INFO hi env=prod zone=a\"b\n"
        );
    }
}
