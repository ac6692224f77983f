//! OTLP's `ExportTraceServiceRequest` in protobuf, written by hand: the few messages a trace
//! export needs (opentelemetry/proto/collector/trace/v1 and trace/v1, common/v1, resource/v1),
//! so that exporting costs no code generator and no protobuf runtime. The test receiver
//! decodes it with the OpenTelemetry project's own generated types.

use super::span::{Kind, SpanData, Status, Value};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, LEN);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A string field; proto3 leaves an empty one out.
    fn string(&mut self, field: u32, text: &str) {
        if !text.is_empty() {
            self.bytes(field, text.as_bytes());
        }
    }

    fn message(&mut self, field: u32, inner: Message) {
        self.bytes(field, &inner.0);
    }

    /// An int64 or enum field; proto3 leaves a zero out.
    fn int(&mut self, field: u32, n: i64) {
        if n != 0 {
            self.tag(field, VARINT);
            self.varint(n as u64);
        }
    }

    fn fixed64(&mut self, field: u32, n: u64) {
        self.tag(field, FIXED64);
        self.0.extend_from_slice(&n.to_le_bytes());
    }
}

/// `common.v1.KeyValue`: key 1, value 2 (an `AnyValue`: string 1, bool 2, int 3).
fn key_value(key: &str, value: &Value) -> Message {
    let mut any = Message::default();
    match value {
        Value::Str(text) => any.bytes(1, text.as_bytes()),
        Value::Bool(b) => {
            any.tag(2, VARINT);
            any.varint(u64::from(*b));
        }
        Value::Int(n) => {
            any.tag(3, VARINT);
            any.varint(*n as u64);
        }
    }
    let mut kv = Message::default();
    kv.string(1, key);
    kv.message(2, any);
    kv
}

/// `trace.v1.Span`.
fn span(span: &SpanData) -> Message {
    let mut m = Message::default();
    m.bytes(1, &span.trace_id);
    m.bytes(2, &span.span_id);
    m.string(3, &span.state);
    if let Some(parent) = &span.parent {
        m.bytes(4, parent);
    }
    m.string(5, &span.name);
    m.int(
        6,
        match span.kind {
            Kind::Internal => 1,
            Kind::Server => 2,
            Kind::Client => 3,
        },
    );
    m.fixed64(7, span.start);
    m.fixed64(8, span.end);
    for (key, value) in &span.attrs {
        m.message(9, key_value(key, value));
    }
    let (code, message) = match &span.status {
        Status::Unset => (0, ""),
        Status::Error(message) => (2, message.as_str()),
    };
    if code != 0 {
        // `Status`: message 2, code 3.
        let mut status = Message::default();
        status.string(2, message);
        status.int(3, code);
        m.message(15, status);
    }
    m
}

/// The export request for `spans`, under one resource with `resource` attributes and one
/// instrumentation scope named `scope` at `version`.
pub(super) fn export_request(
    resource: &[(&str, Value)],
    (scope, version): (&str, &str),
    spans: &[SpanData],
) -> Vec<u8> {
    let mut res = Message::default();
    for (key, value) in resource {
        res.message(1, key_value(key, value));
    }
    let mut instrumentation = Message::default();
    instrumentation.string(1, scope);
    instrumentation.string(2, version);
    let mut scope_spans = Message::default();
    scope_spans.message(1, instrumentation);
    for s in spans {
        scope_spans.message(2, span(s));
    }
    let mut resource_spans = Message::default();
    resource_spans.message(1, res);
    resource_spans.message(2, scope_spans);
    let mut request = Message::default();
    request.message(1, resource_spans);
    request.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_are_written_as_protobuf_says() {
        let mut m = Message::default();
        m.varint(300);
        assert_eq!(m.0, [0xac, 0x02]);
        let mut m = Message::default();
        m.int(6, 2);
        m.fixed64(7, 1);
        m.string(5, "");
        assert_eq!(m.0, [0x30, 0x02, 0x39, 1, 0, 0, 0, 0, 0, 0, 0]);
        let kv = key_value("a", &Value::Int(-1));
        // An int64's negative value is ten bytes of varint.
        assert_eq!(kv.0.len(), 3 + 2 + 1 + 10);
    }
}
