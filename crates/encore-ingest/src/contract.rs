//! Data contracts: what a valid row of each event type looks like, declared once as a table of
//! field rules plus a few named cross-field rules, and checked against any row representation
//! (a JSON object from a file or request, or a row of an Arrow batch from Parquet).
//!
//! Every broken rule becomes a [`Violation`] that names the field, the value and the rule.

use encore_core::event::{
    ContextType, InteractionKind, ItemType, Platform, ReasonEnd, ReasonStart, SCHEMA_VERSION, Tier,
};
use encore_core::time::MS_PER_MINUTE;
use serde::{Deserialize, Serialize};

/// How far in the future a timestamp may be (clock skew between clients and encore).
pub const FUTURE_TOLERANCE_MS: i64 = 5 * MS_PER_MINUTE;
/// `ms_played` may exceed the item's duration by this much (players round up, buffer, ...).
pub const DURATION_TOLERANCE_MS: i64 = 5_000;

/// The type and domain of a field.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// a non-empty string
    Str,
    /// a UUID in its 36-character text form
    Uuid,
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    Enum(&'static [&'static str]),
    /// ISO-3166 alpha-2
    Country,
    /// an array (experiment assignments)
    List,
    /// an object (consent flags)
    Object,
}

impl Kind {
    fn expected(&self) -> String {
        match self {
            Kind::Str => "a non-empty string".into(),
            Kind::Uuid => "a UUID string".into(),
            Kind::Int { min, max } => format!("an integer in {min}..={max}"),
            Kind::Float { min, max } => format!("a number in {min}..={max}"),
            Kind::Bool => "true or false".into(),
            Kind::Enum(names) => format!("one of {}", names.join(", ")),
            Kind::Country => "an ISO-3166 alpha-2 country code".into(),
            Kind::List => "an array".into(),
            Kind::Object => "an object".into(),
        }
    }
}

/// One field of a contract.
#[derive(Debug, Clone, Copy)]
pub struct FieldRule {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn req(name: &'static str, kind: Kind) -> FieldRule {
    FieldRule {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> FieldRule {
    FieldRule {
        name,
        kind,
        required: false,
    }
}

const U32: Kind = Kind::Int {
    min: 0,
    max: u32::MAX as i64,
};
const TS: Kind = Kind::Int {
    min: 0,
    max: i64::MAX,
};
const VERSION: Kind = Kind::Int {
    min: 1,
    max: SCHEMA_VERSION as i64,
};
const PROPENSITY: Kind = Kind::Float {
    min: f64::MIN_POSITIVE,
    max: 1.0,
};

/// A value as the contract sees it, whatever the row's representation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Null,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    List,
    Object,
}

impl Cell<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Cell::Missing => "nothing",
            Cell::Null => "null",
            Cell::Str(_) => "a string",
            Cell::Int(_) => "an integer",
            Cell::Float(_) => "a number",
            Cell::Bool(_) => "a boolean",
            Cell::List => "an array",
            Cell::Object => "an object",
        }
    }

    /// The value for messages, shortened.
    pub fn show(&self) -> String {
        let s = match self {
            Cell::Missing => return "(missing)".into(),
            Cell::Null => return "null".into(),
            Cell::Str(s) => format!("{s:?}"),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::List => return "[...]".into(),
            Cell::Object => return "{...}".into(),
        };
        if s.chars().count() > 60 {
            format!("{}...", s.chars().take(57).collect::<String>())
        } else {
            s
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    fn is_absent(&self) -> bool {
        matches!(self, Cell::Missing | Cell::Null)
    }
}

/// A row to check: field `i` of the contract's field list.
pub trait Row {
    fn cell(&self, field: usize) -> Cell<'_>;
}

/// One broken rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub field: String,
    /// the offending value, shortened (`(missing)` when absent)
    pub value: String,
    /// the rule's stable name: `required`, `type`, `range`, `enum`, `uuid`, `country`, `empty`,
    /// `ts_end_after_start`, `ms_played_within_duration`, `not_in_future`, ...
    pub rule: String,
    pub message: String,
}

/// A declared contract: field rules in schema order and the cross-field rules.
#[derive(Debug)]
pub struct Contract {
    pub table: &'static str,
    pub fields: &'static [FieldRule],
    cross: fn(&dyn Row, i64, &mut Vec<Violation>),
    /// index of the field that names the played or acted-on item (for unknown-item counts)
    pub item_field: usize,
    pub id_field: usize,
    pub ts_field: usize,
}

impl Contract {
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The cross-field rules alone, for rows whose fields are known to be valid.
    pub fn check_cross(&self, row: &dyn Row, now_ms: i64) -> Vec<Violation> {
        let mut out = Vec::new();
        (self.cross)(row, now_ms, &mut out);
        out
    }

    /// Every violation of `row`, given the current time `now_ms` (for the future-timestamp rule).
    pub fn check(&self, row: &dyn Row, now_ms: i64) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, rule) in self.fields.iter().enumerate() {
            if let Some(v) = check_field(rule, row.cell(i)) {
                out.push(v);
            }
        }
        // cross-field rules only make sense on fields that are individually valid
        if out.is_empty() {
            (self.cross)(row, now_ms, &mut out);
        }
        out
    }
}

impl Violation {
    /// `field `ms_played` = "long": expected an integer ... (rule type)`
    pub fn describe(&self) -> String {
        if self.field.is_empty() {
            format!("{} (rule {})", self.message, self.rule)
        } else {
            format!(
                "field `{}` = {}: {} (rule {})",
                self.field, self.value, self.message, self.rule
            )
        }
    }

    /// Every violation described, `; `-separated.
    pub fn describe_all(violations: &[Violation]) -> String {
        violations
            .iter()
            .map(Violation::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn violation(field: &str, cell: Cell<'_>, rule: &str, message: String) -> Violation {
    Violation {
        field: field.to_owned(),
        value: cell.show(),
        rule: rule.to_owned(),
        message,
    }
}

fn check_field(rule: &FieldRule, cell: Cell<'_>) -> Option<Violation> {
    let name = rule.name;
    if cell.is_absent() {
        return rule.required.then(|| {
            violation(
                name,
                cell,
                "required",
                format!("missing required field, expected {}", rule.kind.expected()),
            )
        });
    }
    let wrong_type = || {
        violation(
            name,
            cell,
            "type",
            format!(
                "expected {}, got {}",
                rule.kind.expected(),
                cell.type_name()
            ),
        )
    };
    match (rule.kind, cell) {
        (Kind::Str, Cell::Str(s)) => s
            .is_empty()
            .then(|| violation(name, cell, "empty", "must not be empty".into())),
        (Kind::Uuid, Cell::Str(s)) => (!is_uuid(s)).then(|| {
            violation(
                name,
                cell,
                "uuid",
                "expected a UUID like 0b7f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c90".into(),
            )
        }),
        (Kind::Enum(names), Cell::Str(s)) => (!names.contains(&s)).then(|| {
            violation(
                name,
                cell,
                "enum",
                format!("expected one of {}", names.join(", ")),
            )
        }),
        (Kind::Country, Cell::Str(s)) => (!is_country(s)).then(|| {
            violation(
                name,
                cell,
                "country",
                "expected an ISO-3166 alpha-2 country code such as SE or BR".into(),
            )
        }),
        (Kind::Int { min, max }, Cell::Int(i)) => (i < min || i > max).then(|| {
            violation(
                name,
                cell,
                "range",
                format!("out of range, expected {min}..={max}"),
            )
        }),
        (Kind::Float { min, max }, Cell::Float(f)) => (!(f >= min && f <= max)).then(|| {
            violation(
                name,
                cell,
                "range",
                format!("out of range, expected {min}..={max}"),
            )
        }),
        (Kind::Float { min, max }, Cell::Int(i)) => {
            let f = i as f64;
            (f < min || f > max).then(|| {
                violation(
                    name,
                    cell,
                    "range",
                    format!("out of range, expected {min}..={max}"),
                )
            })
        }
        (Kind::Bool, Cell::Bool(_)) | (Kind::List, Cell::List) | (Kind::Object, Cell::Object) => {
            None
        }
        _ => Some(wrong_type()),
    }
}

/// 8-4-4-4-12 hex digits.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The 128-bit value of a UUID string (assumes [`is_uuid`]).
pub fn uuid_bits(s: &str) -> Option<u128> {
    let mut v: u128 = 0;
    let mut digits = 0;
    for c in s.bytes() {
        if c == b'-' {
            continue;
        }
        v = (v << 4) | u128::from((c as char).to_digit(16)?);
        digits += 1;
    }
    (digits == 32).then_some(v)
}

/// ISO-3166-1 alpha-2, officially assigned codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC \
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE \
NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD \
SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA \
UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Officially assigned ISO-3166 alpha-2 codes, plus `ZZ`, the user-assigned code for "unknown"
/// (imported data that does not record a country).
pub fn is_country(s: &str) -> bool {
    // a 26 x 26 table: this runs for every row ingested
    static TABLE: std::sync::OnceLock<[bool; 676]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [false; 676];
        for code in COUNTRIES.split(' ').chain(["ZZ"]) {
            let b = code.as_bytes();
            t[usize::from(b[0] - b'A') * 26 + usize::from(b[1] - b'A')] = true;
        }
        t
    });
    match s.as_bytes() {
        [a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            table[usize::from(a - b'A') * 26 + usize::from(b - b'A')]
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// playback

const PLAYBACK_FIELDS: &[FieldRule] = &[
    req("event_id", Kind::Uuid),
    req("schema_version", VERSION),
    req("user_id", Kind::Str),
    req("session_id", Kind::Str),
    req("ts_start_ms", TS),
    req("ts_end_ms", TS),
    req("item_id", Kind::Str),
    req("item_type", Kind::Enum(ItemType::NAMES)),
    req(
        "item_duration_ms",
        Kind::Int {
            min: 1,
            max: u32::MAX as i64,
        },
    ),
    req("ms_played", U32),
    req("reason_start", Kind::Enum(ReasonStart::NAMES)),
    req("reason_end", Kind::Enum(ReasonEnd::NAMES)),
    req("context_type", Kind::Enum(ContextType::NAMES)),
    opt("context_id", Kind::Str),
    opt("request_id", Kind::Str),
    opt("position", U32),
    opt("propensity", PROPENSITY),
    opt("experiments", Kind::List),
    opt("shuffle", Kind::Bool),
    opt("offline", Kind::Bool),
    opt("private_session", Kind::Bool),
    opt("taste_excluded", Kind::Bool),
    req("platform", Kind::Enum(Platform::NAMES)),
    req("country", Kind::Country),
    req("tier", Kind::Enum(Tier::NAMES)),
    opt("consent", Kind::Object),
];

mod p {
    pub const TS_START: usize = 4;
    pub const TS_END: usize = 5;
    pub const ITEM: usize = 6;
    pub const DURATION: usize = 8;
    pub const MS_PLAYED: usize = 9;
}

fn playback_cross(row: &dyn Row, now_ms: i64, out: &mut Vec<Violation>) {
    let int = |i| row.cell(i).as_int().unwrap_or(0);
    let (start, end) = (int(p::TS_START), int(p::TS_END));
    if end < start {
        out.push(violation(
            "ts_end_ms",
            row.cell(p::TS_END),
            "ts_end_after_start",
            format!("ts_end_ms must not be before ts_start_ms ({start})"),
        ));
    }
    let (played, duration) = (int(p::MS_PLAYED), int(p::DURATION));
    if played > duration + DURATION_TOLERANCE_MS {
        out.push(violation(
            "ms_played",
            row.cell(p::MS_PLAYED),
            "ms_played_within_duration",
            format!("ms_played must be at most item_duration_ms ({duration}) + 5 s"),
        ));
    }
    for (i, name) in [(p::TS_START, "ts_start_ms"), (p::TS_END, "ts_end_ms")] {
        if int(i) > now_ms + FUTURE_TOLERANCE_MS {
            out.push(violation(
                name,
                row.cell(i),
                "not_in_future",
                format!("more than 5 minutes in the future (now is {now_ms})"),
            ));
            break;
        }
    }
}

pub static PLAYBACK: Contract = Contract {
    table: "playback",
    fields: PLAYBACK_FIELDS,
    cross: playback_cross,
    item_field: p::ITEM,
    id_field: 0,
    ts_field: p::TS_START,
};

// ---------------------------------------------------------------------------------------------
// interactions

const INTERACTION_FIELDS: &[FieldRule] = &[
    req("event_id", Kind::Uuid),
    req("schema_version", VERSION),
    req("user_id", Kind::Str),
    opt("session_id", Kind::Str),
    req("ts_ms", TS),
    req("kind", Kind::Enum(InteractionKind::NAMES)),
    opt("item_id", Kind::Str),
    opt("item_type", Kind::Enum(ItemType::NAMES)),
    opt("context_type", Kind::Enum(ContextType::NAMES)),
    opt("context_id", Kind::Str),
    opt("request_id", Kind::Str),
    opt("position", U32),
    opt("propensity", PROPENSITY),
    opt("experiments", Kind::List),
    opt(
        "count",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    opt("query", Kind::Str),
    opt(
        "value",
        Kind::Float {
            min: f64::MIN,
            max: f64::MAX,
        },
    ),
    req("platform", Kind::Enum(Platform::NAMES)),
    req("country", Kind::Country),
    req("tier", Kind::Enum(Tier::NAMES)),
    opt("consent", Kind::Object),
];

mod i {
    pub const TS: usize = 4;
    pub const KIND: usize = 5;
    pub const ITEM: usize = 6;
    pub const EXPERIMENTS: usize = 13;
    pub const COUNT: usize = 14;
    pub const VALUE: usize = 16;
}

fn interaction_cross(row: &dyn Row, now_ms: i64, out: &mut Vec<Violation>) {
    let ts = row.cell(i::TS).as_int().unwrap_or(0);
    if ts > now_ms + FUTURE_TOLERANCE_MS {
        out.push(violation(
            "ts_ms",
            row.cell(i::TS),
            "not_in_future",
            format!("more than 5 minutes in the future (now is {now_ms})"),
        ));
    }
    let kind = row.cell(i::KIND);
    let kind = kind.as_str().unwrap_or("");
    let needs = |field: usize, name: &str, rule: &str, out: &mut Vec<Violation>| {
        if row.cell(field).is_absent() {
            out.push(violation(
                name,
                row.cell(field),
                rule,
                format!("required when kind is {kind}"),
            ));
        }
    };
    if kind == InteractionKind::Exposure.as_str() {
        needs(i::EXPERIMENTS, "experiments", "experiments_required", out);
    } else if kind != InteractionKind::Search.as_str() {
        needs(i::ITEM, "item_id", "item_required", out);
    }
    if kind == InteractionKind::PlayCount.as_str() {
        needs(i::COUNT, "count", "count_required", out);
    }
    if kind == InteractionKind::Rating.as_str() {
        needs(i::VALUE, "value", "value_required", out);
    }
}

pub static INTERACTION: Contract = Contract {
    table: "interaction",
    fields: INTERACTION_FIELDS,
    cross: interaction_cross,
    item_field: i::ITEM,
    id_field: 0,
    ts_field: i::TS,
};

// ---------------------------------------------------------------------------------------------
// row representations

/// A JSON object as a row.
#[derive(Debug)]
pub struct JsonRow<'a> {
    pub contract: &'static Contract,
    pub object: &'a serde_json::Map<String, serde_json::Value>,
}

impl Row for JsonRow<'_> {
    fn cell(&self, field: usize) -> Cell<'_> {
        use serde_json::Value;
        match self.object.get(self.contract.fields[field].name) {
            None => Cell::Missing,
            Some(Value::Null) => Cell::Null,
            Some(Value::String(s)) => Cell::Str(s),
            Some(Value::Bool(b)) => Cell::Bool(*b),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                // a u64 above i64::MAX is out of every integer range here
                None if n.is_u64() => Cell::Int(i64::MAX),
                None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(Value::Array(_)) => Cell::List,
            Some(Value::Object(_)) => Cell::Object,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Vec<Violation> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        PLAYBACK.check(
            &JsonRow {
                contract: &PLAYBACK,
                object: v.as_object().unwrap(),
            },
            2_000_000_000_000,
        )
    }

    const GOOD: &str = r#"{"event_id":"0b7f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c90","schema_version":1,
        "user_id":"u1","session_id":"s1","ts_start_ms":1767600000000,"ts_end_ms":1767600200000,
        "item_id":"t1","item_type":"track","item_duration_ms":200000,"ms_played":200000,
        "reason_start":"clickrow","reason_end":"trackdone","context_type":"album",
        "platform":"ios","country":"SE","tier":"premium"}"#;

    fn with(field: &str, value: serde_json::Value) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        match value {
            serde_json::Value::Null if field.starts_with('-') => {
                v.as_object_mut().unwrap().remove(&field[1..]);
            }
            value => {
                v[field] = value;
            }
        }
        v.to_string()
    }

    #[test]
    fn good_row_passes() {
        assert_eq!(check(GOOD), vec![]);
    }

    #[test]
    fn each_rule_names_field_value_and_rule() {
        use serde_json::json;
        let cases = [
            (
                with("-user_id", json!(null)),
                "user_id",
                "required",
                "(missing)",
            ),
            (
                with("ms_played", json!("long")),
                "ms_played",
                "type",
                "\"long\"",
            ),
            (
                with("reason_end", json!("bored")),
                "reason_end",
                "enum",
                "\"bored\"",
            ),
            (
                with("item_duration_ms", json!(0)),
                "item_duration_ms",
                "range",
                "0",
            ),
            (with("country", json!("XX")), "country", "country", "\"XX\""),
            (
                with("event_id", json!("e-1")),
                "event_id",
                "uuid",
                "\"e-1\"",
            ),
            (
                with("ms_played", json!(205_001)),
                "ms_played",
                "ms_played_within_duration",
                "205001",
            ),
            (
                with("ts_end_ms", json!(1_767_599_999_999i64)),
                "ts_end_ms",
                "ts_end_after_start",
                "1767599999999",
            ),
            (with("propensity", json!(1.5)), "propensity", "range", "1.5"),
        ];
        for (row, field, rule, value) in cases {
            let v = check(&row);
            assert_eq!(v.len(), 1, "{row}: {v:?}");
            assert_eq!(
                (v[0].field.as_str(), v[0].rule.as_str(), v[0].value.as_str()),
                (field, rule, value)
            );
        }
    }

    #[test]
    fn future_timestamps_are_rejected_beyond_five_minutes() {
        use serde_json::json;
        let now: i64 = 2_000_000_000_000;
        let row = with("ts_start_ms", json!(now + 4 * MS_PER_MINUTE));
        let row: serde_json::Value = serde_json::from_str(&row).unwrap();
        let mut row = row;
        row["ts_end_ms"] = json!(now + 4 * MS_PER_MINUTE);
        assert_eq!(check(&row.to_string()), vec![]);
        row["ts_start_ms"] = json!(now + 6 * MS_PER_MINUTE);
        row["ts_end_ms"] = json!(now + 6 * MS_PER_MINUTE);
        let v = check(&row.to_string());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "not_in_future");
    }

    #[test]
    fn country_list_is_complete_and_strict() {
        assert_eq!(COUNTRIES.split(' ').count(), 249);
        assert!(is_country("BR") && is_country("ZW") && is_country("AX"));
        assert!(!is_country("br") && !is_country("UK") && !is_country("XK") && !is_country("BRA"));
    }

    #[test]
    fn uuid_bits_round_trip() {
        let s = "0b7f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c90";
        assert!(is_uuid(s));
        assert_eq!(uuid_bits(s), Some(0x0b7f6c1e_9d2a_4c8e_8f3a_2d1e5b6a7c90));
        assert!(!is_uuid("0b7f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c9g"));
    }

    #[test]
    fn interaction_cross_rules_follow_the_kind() {
        let base = r#"{"event_id":"0b7f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c90","schema_version":1,
            "user_id":"u1","ts_ms":1,"kind":"play_count","item_id":"a1","platform":"web",
            "country":"US","tier":"free"}"#;
        let v: serde_json::Value = serde_json::from_str(base).unwrap();
        let row = JsonRow {
            contract: &INTERACTION,
            object: v.as_object().unwrap(),
        };
        let violations = INTERACTION.check(&row, 10);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].rule, "count_required");
    }
}
