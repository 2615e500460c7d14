//! encore's shared vocabulary: identifiers, the canonical listening and interaction events, catalog
//! entities, calendar helpers and the one stable error-code enum every crate maps its errors to.
//!
//! Nothing here does I/O; every other crate depends on this one.
//!
//! ```
//! use encore_core::event::{PlaybackEvent, ReasonEnd};
//! let json = r#"{"event_id":"e1","schema_version":1,"user_id":"u1","session_id":"s1",
//!   "ts_start_ms":0,"ts_end_ms":200000,"item_id":"t1","item_type":"track",
//!   "item_duration_ms":200000,"ms_played":200000,"reason_start":"clickrow",
//!   "reason_end":"trackdone","context_type":"album","platform":"ios","country":"SE",
//!   "tier":"premium"}"#;
//! let event: PlaybackEvent = serde_json::from_str(json).unwrap();
//! assert!(event.is_stream());
//! assert_eq!(event.reason_end, ReasonEnd::Trackdone);
//! ```

pub mod arrow;
pub mod catalog;
pub mod error;
pub mod event;
pub mod ids;
pub mod shared;
pub mod time;

pub use error::{Coded, ErrorCode, Invalid};
