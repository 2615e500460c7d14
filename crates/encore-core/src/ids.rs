//! Identifier newtypes. They are strings on the wire (pseudonymous ids chosen by the client) and
//! distinct types in code, so a user id can never be passed where an item id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A pseudonymous listener id (never an e-mail or a device id).
    UserId
);
string_id!(
    /// A playable item: a track, a podcast episode or an audiobook chapter.
    ItemId
);
string_id!(
    /// An artist (or podcast show / author).
    ArtistId
);
string_id!(
    /// An album, single or EP.
    AlbumId
);
string_id!(
    /// A listening session: consecutive plays without a long pause.
    SessionId
);
string_id!(
    /// The idempotency key of an event (a UUID on the wire).
    EventId
);
