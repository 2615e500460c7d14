//! Fixed vocabularies: genres with their tags and character, moods/eras, countries, words for names.

/// A genre cluster: the unit of taste in the simulated world.
#[derive(Debug)]
pub struct GenreSpec {
    pub name: &'static str,
    /// relative share of artists (and of listeners' taste) worldwide
    pub share: f64,
    /// probability that a track is explicit, on average over the genre's artists
    pub explicit_rate: f64,
    /// typical track length in seconds
    pub duration_s: f64,
    /// sub-genre / style tags, most common first
    pub tags: &'static [&'static str],
}

macro_rules! genres {
    ($(($name:literal, $share:literal, $explicit:literal, $dur:literal, [$($tag:literal),+ $(,)?])),+ $(,)?) => {
        pub const GENRES: &[GenreSpec] = &[
            $(GenreSpec { name: $name, share: $share, explicit_rate: $explicit, duration_s: $dur, tags: &[$($tag),+] }),+
        ];
    };
}

genres!(
    (
        "pop",
        16.0,
        0.15,
        205.0,
        [
            "dance pop",
            "synthpop",
            "electropop",
            "teen pop",
            "k-pop",
            "j-pop",
            "power pop",
            "art pop",
            "bubblegum pop",
            "europop"
        ]
    ),
    (
        "hip-hop",
        13.0,
        0.65,
        200.0,
        [
            "rap",
            "trap",
            "boom bap",
            "conscious hip hop",
            "gangsta rap",
            "underground hip-hop",
            "drill",
            "cloud rap",
            "grime",
            "west coast rap"
        ]
    ),
    (
        "rock",
        11.0,
        0.08,
        240.0,
        [
            "alternative rock",
            "classic rock",
            "hard rock",
            "indie rock",
            "garage rock",
            "psychedelic rock",
            "soft rock",
            "grunge",
            "post-rock",
            "stoner rock"
        ]
    ),
    (
        "electronic",
        7.0,
        0.05,
        300.0,
        [
            "house",
            "techno",
            "trance",
            "drum and bass",
            "dubstep",
            "ambient",
            "idm",
            "electro",
            "downtempo",
            "breakbeat"
        ]
    ),
    (
        "indie",
        6.0,
        0.10,
        220.0,
        [
            "indie pop",
            "lo-fi",
            "bedroom pop",
            "dream pop",
            "shoegaze",
            "chamber pop",
            "indietronica",
            "twee"
        ]
    ),
    (
        "r&b",
        6.0,
        0.35,
        215.0,
        [
            "soul",
            "neo-soul",
            "contemporary r&b",
            "funk",
            "motown",
            "quiet storm",
            "new jack swing"
        ]
    ),
    (
        "latin",
        6.0,
        0.20,
        210.0,
        [
            "reggaeton",
            "salsa",
            "bachata",
            "latin pop",
            "cumbia",
            "bossa nova",
            "tango",
            "corridos"
        ]
    ),
    (
        "metal",
        4.0,
        0.12,
        290.0,
        [
            "heavy metal",
            "death metal",
            "black metal",
            "thrash metal",
            "metalcore",
            "doom metal",
            "progressive metal",
            "power metal",
            "nu metal"
        ]
    ),
    (
        "country",
        4.0,
        0.03,
        200.0,
        [
            "americana",
            "bluegrass",
            "country pop",
            "outlaw country",
            "honky tonk",
            "alt-country"
        ]
    ),
    (
        "edm",
        3.0,
        0.05,
        210.0,
        [
            "big room",
            "electro house",
            "future bass",
            "progressive house",
            "hardstyle",
            "tropical house"
        ]
    ),
    (
        "jazz",
        3.0,
        0.0,
        330.0,
        [
            "bebop",
            "smooth jazz",
            "jazz fusion",
            "swing",
            "cool jazz",
            "vocal jazz",
            "free jazz",
            "latin jazz"
        ]
    ),
    (
        "classical",
        3.0,
        0.0,
        420.0,
        [
            "baroque",
            "romantic era",
            "opera",
            "solo piano",
            "string quartet",
            "contemporary classical",
            "choral",
            "symphony"
        ]
    ),
    (
        "folk",
        3.0,
        0.02,
        225.0,
        [
            "singer-songwriter",
            "acoustic",
            "indie folk",
            "folk rock",
            "celtic",
            "traditional folk",
            "anti-folk"
        ]
    ),
    (
        "afrobeats",
        2.5,
        0.15,
        200.0,
        ["afropop", "amapiano", "highlife", "afrobeat", "afro-fusion"]
    ),
    (
        "punk",
        2.0,
        0.15,
        150.0,
        [
            "punk rock",
            "pop punk",
            "hardcore punk",
            "post-punk",
            "ska punk",
            "emo"
        ]
    ),
    (
        "reggae",
        2.0,
        0.05,
        230.0,
        ["dancehall", "roots reggae", "dub", "ska", "lovers rock"]
    ),
    (
        "soundtrack",
        2.0,
        0.0,
        180.0,
        [
            "film score",
            "video game music",
            "musicals",
            "anime",
            "tv themes"
        ]
    ),
    (
        "chill",
        2.0,
        0.0,
        150.0,
        [
            "chillhop",
            "lofi hip hop",
            "chillout",
            "study beats",
            "jazzhop"
        ]
    ),
    (
        "blues",
        1.5,
        0.01,
        260.0,
        [
            "delta blues",
            "chicago blues",
            "blues rock",
            "electric blues",
            "soul blues"
        ]
    ),
    (
        "world",
        1.5,
        0.0,
        260.0,
        [
            "flamenco",
            "fado",
            "bollywood",
            "arabic",
            "turkish pop",
            "mpb",
            "chanson"
        ]
    ),
    (
        "disco",
        1.5,
        0.02,
        260.0,
        ["nu-disco", "boogie", "italo disco", "eurodisco"]
    ),
    (
        "gospel",
        1.0,
        0.0,
        270.0,
        ["christian", "worship", "ccm", "southern gospel"]
    ),
    (
        "new age",
        0.8,
        0.0,
        360.0,
        ["meditation", "healing", "nature sounds", "relaxation"]
    ),
    (
        "children",
        0.7,
        0.0,
        140.0,
        ["children's music", "lullaby", "nursery rhymes"]
    ),
);

/// Tags that cut across genres (moods, eras, descriptors), most used first.
pub const GLOBAL_TAGS: &[&str] = &[
    "seen live",
    "female vocalists",
    "male vocalists",
    "chill",
    "00s",
    "90s",
    "80s",
    "10s",
    "70s",
    "love",
    "party",
    "sad",
    "energetic",
    "melancholic",
    "happy",
    "romantic",
    "workout",
    "driving",
    "summer",
    "night",
    "instrumental",
    "beautiful",
    "catchy",
    "epic",
    "mellow",
    "upbeat",
    "dark",
    "atmospheric",
    "60s",
    "20s",
    "british",
    "american",
    "swedish",
    "german",
    "french",
    "japanese",
    "korean",
    "brazilian",
    "canadian",
    "australian",
    "favorites",
    "awesome",
    "cover",
    "remix",
    "live",
    "guitar",
    "piano",
    "dance",
    "rainy day",
    "road trip",
    "focus",
    "sleep",
    "heartbreak",
    "nostalgia",
    "underrated",
    "one hit wonder",
    "female fronted",
    "duet",
    "collaboration",
    "experimental",
    "minimal",
    "lush",
    "raw",
    "groovy",
    "uplifting",
    "haunting",
    "quirky",
];

/// (ISO code, share of listeners, UTC offset in minutes)
pub const COUNTRIES: &[(&str, f64, i32)] = &[
    ("US", 22.0, -300),
    ("BR", 8.0, -180),
    ("GB", 6.0, 0),
    ("DE", 6.0, 60),
    ("MX", 5.0, -360),
    ("IN", 5.0, 330),
    ("FR", 4.0, 60),
    ("ID", 4.0, 420),
    ("ES", 3.0, 60),
    ("IT", 3.0, 60),
    ("CA", 3.0, -300),
    ("JP", 3.0, 540),
    ("PH", 3.0, 480),
    ("AU", 2.5, 600),
    ("NL", 2.0, 60),
    ("SE", 2.0, 60),
    ("PL", 2.0, 60),
    ("TR", 2.0, 180),
    ("AR", 2.0, -180),
    ("CO", 2.0, -300),
    ("CL", 1.5, -240),
    ("NG", 1.5, 60),
    ("KR", 1.5, 540),
    ("ZA", 1.0, 120),
    ("NO", 1.0, 60),
    ("FI", 1.0, 120),
    ("DK", 1.0, 60),
    ("BE", 1.0, 60),
    ("CH", 1.0, 60),
    ("AT", 1.0, 60),
];

/// Genre boosts by country: listeners there are this many times likelier to hold the genre.
pub const COUNTRY_GENRE_BOOST: &[(&str, &str, f64)] = &[
    ("MX", "latin", 5.0),
    ("BR", "latin", 3.0),
    ("AR", "latin", 5.0),
    ("CO", "latin", 6.0),
    ("CL", "latin", 5.0),
    ("ES", "latin", 3.0),
    ("NG", "afrobeats", 8.0),
    ("ZA", "afrobeats", 5.0),
    ("KR", "pop", 2.0),
    ("JP", "soundtrack", 3.0),
    ("IN", "world", 6.0),
    ("SE", "metal", 2.0),
    ("FI", "metal", 3.0),
    ("US", "country", 2.0),
    ("US", "hip-hop", 1.5),
    ("DE", "electronic", 2.0),
];

pub const ADJECTIVES: &[&str] = &[
    "velvet",
    "neon",
    "silent",
    "golden",
    "broken",
    "electric",
    "wild",
    "midnight",
    "crystal",
    "hollow",
    "burning",
    "frozen",
    "lunar",
    "secret",
    "paper",
    "iron",
    "scarlet",
    "wandering",
    "bright",
    "lazy",
    "cosmic",
    "distant",
    "gentle",
    "savage",
    "lonely",
    "sweet",
    "northern",
    "blue",
    "violet",
    "little",
    "endless",
    "faded",
    "hidden",
    "restless",
    "sacred",
    "static",
    "tender",
    "urban",
    "vivid",
    "young",
];

pub const NOUNS: &[&str] = &[
    "harbor",
    "coyote",
    "echo",
    "river",
    "garden",
    "machine",
    "ocean",
    "mirror",
    "lantern",
    "wolf",
    "satellite",
    "orchard",
    "cathedral",
    "highway",
    "fever",
    "horizon",
    "signal",
    "ghost",
    "thunder",
    "parade",
    "circus",
    "desert",
    "engine",
    "forest",
    "island",
    "jungle",
    "kingdom",
    "meadow",
    "noise",
    "planet",
    "queen",
    "rebel",
    "shadow",
    "tiger",
    "valley",
    "wave",
    "youth",
    "canyon",
    "comet",
    "dream",
];

pub const FIRST_NAMES: &[&str] = &[
    "maya", "leo", "nina", "omar", "ava", "kai", "zoe", "luca", "ines", "theo", "sara", "joao",
    "mei", "ravi", "lena", "diego", "yuki", "amara", "felix", "iris", "marco", "noor", "elsa",
    "tomas", "aiko", "sam", "lola", "ezra", "mira", "jonas",
];

pub const LAST_NAMES: &[&str] = &[
    "rivers",
    "stone",
    "moreau",
    "okafor",
    "lindqvist",
    "santos",
    "kim",
    "novak",
    "reyes",
    "tanaka",
    "fischer",
    "costa",
    "haddad",
    "walsh",
    "petrov",
    "nakamura",
    "mensah",
    "bauer",
    "rossi",
    "silva",
    "park",
    "dubois",
    "jensen",
    "alvarez",
    "kowalski",
    "sato",
    "byrne",
    "hughes",
    "nilsen",
    "ortiz",
];
