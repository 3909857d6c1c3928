//! Seeded sentence generator for the synthetic corpus: voice-assistant commands from templates
//! with slots (timers, alarms, lights, weather, music, calls, numbers, dates, times, names) and
//! word-list sentences for triphone coverage.
//!
//! Every sentence is lowercase words separated by single spaces, numbers spelled out, no
//! punctuation, so the transcript is exactly what flite is asked to say.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::error::{Error, Result};

/// The CMU dictionary shipped by Debian's `pocketsphinx-en-us`.
pub const CMUDICT_PATH: &str = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";
/// The word list shipped by Debian's `wamerican`.
pub const WAMERICAN_PATH: &str = "/usr/share/dict/words";

/// Fewest usable words a word list must have for varied sentences.
pub const MIN_WORDS: usize = 1000;

/// Share of sentences that are voice-assistant commands (the rest are word-list sentences).
pub const COMMAND_FRACTION: f64 = 0.5;

/// A filtered list of plain words for the word-list sentences.
#[derive(Debug, Clone)]
pub struct WordList {
    /// Lowercase alphabetic words, sorted and unique.
    pub words: Vec<String>,
    /// Where the words came from (a path, or a note for in-memory lists).
    pub source: String,
}

impl WordList {
    /// Builds a list from arbitrary tokens, keeping the words flite reads as words (see
    /// [`is_plain_word`]); sorted and deduplicated so the file order does not matter.
    pub fn from_words<I, S>(words: I, source: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut kept: Vec<String> = words
            .into_iter()
            .map(|w| w.as_ref().to_string())
            .filter(|w| is_plain_word(w))
            .collect();
        kept.sort();
        kept.dedup();
        WordList {
            words: kept,
            source: source.into(),
        }
    }

    /// Reads a word list: one entry per line, the word being the first token (so the CMU
    /// dictionary, `word  PH ON ES`, and plain lists both work); alternates such as
    /// `word(2)` and non-alphabetic entries are dropped. Fewer than [`MIN_WORDS`] usable words
    /// is an error naming the file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        // Some word lists are Latin-1; the words we keep are ASCII either way.
        let text = String::from_utf8_lossy(&bytes);
        let list = WordList::from_words(
            text.lines().filter_map(|l| l.split_whitespace().next()),
            path.display().to_string(),
        );
        if list.words.len() < MIN_WORDS {
            return Err(Error::format(
                path,
                format!(
                    "only {} plain lowercase words (need at least {MIN_WORDS})",
                    list.words.len()
                ),
            ));
        }
        Ok(list)
    }

    /// The system word list: the CMU dictionary if installed, else `/usr/share/dict/words`,
    /// else an error with the command that installs one.
    pub fn system() -> Result<Self> {
        for path in [CMUDICT_PATH, WAMERICAN_PATH] {
            if Path::new(path).is_file() {
                return WordList::read(path);
            }
        }
        Err(Error::config(format!(
            "no word list found ({CMUDICT_PATH} or {WAMERICAN_PATH}); install one with \
             `apt-get install -y pocketsphinx-en-us` (or `apt-get install -y wamerican`), \
             or pass --word-list FILE"
        )))
    }

    /// [`WordList::read`] of `path` when given, else [`WordList::system`].
    pub fn open(path: Option<&PathBuf>) -> Result<Self> {
        match path {
            Some(p) => WordList::read(p),
            None => WordList::system(),
        }
    }
}

/// Legal English word onsets (consonant letters before the first vowel). flite spells out a
/// word it finds unpronounceable letter by letter ("nth" -> "n t h", "mcknight" -> "m c k ..."),
/// which would make the transcript wrong; these words are dropped.
#[rustfmt::skip]
const ONSETS: &[&str] = &[
    "", "b", "bl", "br", "c", "ch", "chr", "cl", "cr", "d", "dr", "dw", "f", "fl", "fr", "g", "gl", "gr", "h", "j",
    "k", "kl", "kn", "kr", "l", "m", "n", "p", "ph", "pl", "pr", "q", "r", "rh", "s", "sc", "sch", "scr", "sh",
    "shr", "sk", "sl", "sm", "sn", "sp", "spl", "spr", "sq", "st", "str", "sw", "t", "th", "thr", "tr", "tw", "v",
    "w", "wh", "wr", "y", "z",
];

/// Whether `w` is a word the generator may use: 3 to 14 ASCII lowercase letters, a legal onset,
/// a vowel, and no run of 5 consonants ("strength" has 4).
pub fn is_plain_word(w: &str) -> bool {
    let n = w.len();
    if !(3..=14).contains(&n) || !w.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let is_vowel = |b: u8| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y');
    let onset_len = w.bytes().take_while(|&b| !is_vowel(b)).count();
    if onset_len == n || !ONSETS.contains(&&w[..onset_len]) {
        return false;
    }
    let mut run = 0;
    for b in w.bytes() {
        run = if is_vowel(b) { 0 } else { run + 1 };
        if run >= 5 {
            return false;
        }
    }
    true
}

/// What a sentence is, for coverage checks and the per-utterance record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SentenceKind {
    Timer,
    Alarm,
    Lights,
    Weather,
    Music,
    Call,
    Numbers,
    Date,
    Time,
    Names,
    WordList,
}

impl SentenceKind {
    /// Every kind, commands first.
    pub const ALL: [SentenceKind; 11] = [
        SentenceKind::Timer,
        SentenceKind::Alarm,
        SentenceKind::Lights,
        SentenceKind::Weather,
        SentenceKind::Music,
        SentenceKind::Call,
        SentenceKind::Numbers,
        SentenceKind::Date,
        SentenceKind::Time,
        SentenceKind::Names,
        SentenceKind::WordList,
    ];

    /// Lowercase name as written in `utt2synth.tsv`.
    pub fn name(self) -> &'static str {
        match self {
            SentenceKind::Timer => "timer",
            SentenceKind::Alarm => "alarm",
            SentenceKind::Lights => "lights",
            SentenceKind::Weather => "weather",
            SentenceKind::Music => "music",
            SentenceKind::Call => "call",
            SentenceKind::Numbers => "numbers",
            SentenceKind::Date => "date",
            SentenceKind::Time => "time",
            SentenceKind::Names => "names",
            SentenceKind::WordList => "words",
        }
    }
}

/// One generated sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// Lowercase words separated by single spaces.
    pub text: String,
    pub kind: SentenceKind,
    /// Whether flite should read it as a question (final `?` instead of `.`).
    pub question: bool,
}

impl Sentence {
    /// The text handed to flite: the words plus final punctuation for sentence prosody.
    pub fn flite_text(&self) -> String {
        format!("{}{}", self.text, if self.question { "?" } else { "." })
    }
}

#[rustfmt::skip]
const ONES: [&str; 20] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
];
#[rustfmt::skip]
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
#[rustfmt::skip]
const ORDINAL_ONES: [&str; 20] = [
    "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth",
    "nineteenth",
];

/// Spells a cardinal number below one billion in words ("one hundred and five").
pub fn spell_number(n: u64) -> String {
    fn below_thousand(n: u64, out: &mut Vec<String>) {
        let (h, rest) = (n / 100, n % 100);
        if h > 0 {
            out.push(ONES[h as usize].to_string());
            out.push("hundred".to_string());
            if rest > 0 {
                out.push("and".to_string());
            }
        }
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize].to_string());
            if rest % 10 > 0 {
                out.push(ONES[(rest % 10) as usize].to_string());
            }
        } else if rest > 0 || h == 0 {
            out.push(ONES[rest as usize].to_string());
        }
    }
    let n = n.min(999_999_999);
    let mut out = Vec::new();
    let (millions, thousands, rest) = (n / 1_000_000, (n / 1000) % 1000, n % 1000);
    if millions > 0 {
        below_thousand(millions, &mut out);
        out.push("million".to_string());
    }
    if thousands > 0 {
        below_thousand(thousands, &mut out);
        out.push("thousand".to_string());
    }
    if rest > 0 || out.is_empty() {
        below_thousand(rest, &mut out);
    }
    out.join(" ")
}

/// Spells an ordinal from 1 to 99 ("twenty first").
pub fn spell_ordinal(n: u32) -> String {
    let n = n.clamp(1, 99);
    if n < 20 {
        return ORDINAL_ONES[n as usize].to_string();
    }
    let (t, o) = (n / 10, n % 10);
    if o == 0 {
        // "twenty" -> "twentieth"
        format!("{}ieth", &TENS[t as usize][..TENS[t as usize].len() - 1])
    } else {
        format!("{} {}", TENS[t as usize], ORDINAL_ONES[o as usize])
    }
}

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david", "elizabeth", "william",
    "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen", "daniel", "nancy",
    "matthew", "lisa", "anthony", "betty", "mark", "margaret", "donald", "sandra", "steven", "ashley", "paul",
    "kimberly", "andrew", "emily", "joshua", "donna", "kevin", "michelle", "brian", "carol", "george", "amanda",
    "edward", "melissa", "ronald", "deborah", "timothy", "stephanie", "jason", "rebecca", "jeffrey", "laura",
    "ryan", "helen", "jacob", "sharon", "gary", "cynthia", "nicholas", "kathleen", "eric", "amy", "jonathan",
    "shirley", "stephen", "angela", "larry", "anna", "justin", "ruth", "scott", "brenda", "brandon", "pamela",
    "benjamin", "nicole", "samuel", "katherine", "gregory", "virginia", "alexander", "catherine", "patrick",
    "christine", "frank", "samantha", "raymond", "debra", "jack", "janet", "dennis", "rachel", "jerry", "carolyn",
    "tyler", "emma", "aaron", "maria", "jose", "heather", "adam", "diane", "henry", "julie", "nathan", "joyce",
    "peter", "victoria", "zachary", "kelly", "kyle", "christina", "walter", "lauren", "harold", "joan", "jeremy",
    "evelyn", "ethan", "olivia", "carl", "judith", "keith", "megan", "roger", "cheryl", "gerald", "martha",
    "christian", "andrea", "terry", "frances", "sean", "hannah", "arthur", "jacqueline", "austin", "ann", "noah",
    "gloria", "lawrence", "jean", "jesse", "kathryn", "joe", "alice", "bryan", "teresa", "billy", "sara", "jordan",
    "janice", "albert", "doris", "dylan", "madison", "bruce", "julia", "willie", "grace", "gabriel", "judy", "alan",
    "abigail", "juan", "marie", "logan", "denise", "wayne", "beverly", "ralph", "amber", "roy", "theresa", "eugene",
    "marilyn", "randy", "danielle", "vincent", "diana", "russell", "brittany", "louis", "natalie", "philip",
    "sophia", "bobby", "rose", "johnny", "isabella", "bradley", "alexis", "mom", "dad", "grandma", "grandpa",
];
#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez",
    "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin", "lee",
    "perez", "thompson", "white", "harris", "sanchez", "clark", "ramirez", "lewis", "robinson", "walker", "young",
    "allen", "king", "wright", "scott", "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker",
    "hall", "rivera", "campbell", "mitchell", "carter", "roberts", "gomez", "phillips", "evans", "turner", "diaz",
    "parker", "cruz", "edwards", "collins", "reyes", "stewart", "morris", "morales", "murphy", "cook", "rogers",
    "gutierrez", "ortiz", "morgan", "cooper", "peterson", "bailey", "reed", "kelly", "howard", "ramos", "kim",
    "cox", "ward", "richardson", "watson", "brooks", "chavez", "wood", "james", "bennett", "gray", "mendoza",
    "ruiz", "hughes", "price", "alvarez", "castillo", "sanders", "patel", "myers", "long", "ross", "foster",
    "jimenez",
];
#[rustfmt::skip]
const CITIES: &[&str] = &[
    "london", "paris", "new york", "boston", "chicago", "seattle", "denver", "atlanta", "dallas", "houston",
    "phoenix", "miami", "toronto", "vancouver", "montreal", "berlin", "madrid", "rome", "vienna", "prague",
    "dublin", "edinburgh", "glasgow", "manchester", "amsterdam", "brussels", "lisbon", "athens", "stockholm",
    "oslo", "helsinki", "copenhagen", "warsaw", "budapest", "tokyo", "osaka", "seoul", "beijing", "shanghai",
    "singapore", "sydney", "melbourne", "auckland", "cairo", "nairobi", "lagos", "johannesburg", "mumbai", "delhi",
    "bangkok", "jakarta", "manila", "mexico city", "lima", "santiago", "buenos aires", "san francisco",
    "los angeles", "san diego", "portland", "austin", "nashville", "detroit", "pittsburgh", "philadelphia",
    "baltimore", "washington", "orlando", "las vegas", "salt lake city", "minneapolis", "saint louis",
    "kansas city", "new orleans", "honolulu", "anchorage", "oxford", "cambridge", "bristol", "leeds",
];
#[rustfmt::skip]
const ROOMS: &[&str] = &[
    "kitchen", "living room", "bedroom", "bathroom", "dining room", "hallway", "office", "garage", "basement",
    "porch", "nursery", "guest room", "study", "attic", "patio", "garden", "laundry room", "upstairs", "downstairs",
    "front door",
];
#[rustfmt::skip]
const DEVICES: &[&str] = &[
    "lights", "lamp", "fan", "heater", "television", "radio", "speaker", "air conditioner", "coffee maker",
    "dishwasher", "washing machine", "oven", "kettle", "porch light", "ceiling light", "desk lamp", "sprinklers",
    "blinds", "curtains", "fireplace",
];
#[rustfmt::skip]
const COLOURS: &[&str] = &[
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "warm white", "cool white", "teal",
    "violet", "amber", "gold",
];
#[rustfmt::skip]
const GENRES: &[&str] = &[
    "jazz", "classical", "rock", "blues", "country", "folk", "hip hop", "reggae", "soul", "funk", "disco", "pop",
    "techno", "ambient", "gospel", "opera", "metal", "punk", "salsa", "bluegrass",
];
#[rustfmt::skip]
const MUSIC_THINGS: &[&str] = &[
    "songs", "music", "hits", "playlist", "radio", "album", "tunes", "classics", "love songs", "workout mix",
];
#[rustfmt::skip]
const MOODS: &[&str] = &[
    "relaxing", "upbeat", "quiet", "happy", "sad", "calm", "energetic", "romantic", "peaceful", "cheerful",
];
#[rustfmt::skip]
const TIMER_LABELS: &[&str] = &[
    "pasta", "rice", "egg", "pizza", "laundry", "tea", "coffee", "bread", "cookie", "oven", "workout", "study",
    "nap", "parking", "meeting", "cake", "soup", "chicken", "potato", "homework",
];
#[rustfmt::skip]
const DAYS: &[&str] = &[
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
];
#[rustfmt::skip]
const MONTHS: &[&str] = &[
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
    "december",
];
#[rustfmt::skip]
const WHEN: &[&str] = &[
    "today", "tomorrow", "tonight", "this morning", "this afternoon", "this evening", "this weekend", "next week",
    "tomorrow morning", "tomorrow night", "on monday", "on tuesday", "on wednesday", "on thursday", "on friday",
    "on saturday", "on sunday",
];
#[rustfmt::skip]
const TASKS: &[&str] = &[
    "buy milk", "call the dentist", "water the plants", "take out the trash", "pick up the kids", "feed the cat",
    "walk the dog", "pay the rent", "book a table", "check the mail", "charge my phone", "take my medicine",
    "send the report", "lock the door", "buy flowers", "renew my passport", "clean the oven", "wash the car",
    "return the library books", "order more coffee",
];
#[rustfmt::skip]
const ITEMS: &[&str] = &[
    "eggs", "bread", "butter", "apples", "bananas", "cheese", "yogurt", "rice", "pasta", "tomatoes", "onions",
    "garlic", "chicken", "olive oil", "orange juice", "cereal", "coffee beans", "paper towels", "dish soap",
    "toothpaste", "batteries", "lemons", "carrots", "spinach", "flour", "sugar", "honey", "peanut butter",
];
const UNITS: &[(&str, &str)] = &[
    ("inches", "foot"),
    ("feet", "mile"),
    ("ounces", "pound"),
    ("grams", "kilogram"),
    ("centimeters", "meter"),
    ("meters", "kilometer"),
    ("cups", "quart"),
    ("teaspoons", "tablespoon"),
    ("minutes", "day"),
    ("seconds", "hour"),
    ("days", "year"),
    ("pints", "gallon"),
];
#[rustfmt::skip]
const MESSAGES: &[&str] = &[
    "i am running late", "see you soon", "call me back", "i am on my way", "dinner is ready", "happy birthday",
    "where are you", "thank you so much", "i will be there in ten minutes", "can we talk later", "good night",
    "the meeting moved to three",
];
const OPERATIONS: &[&str] = &["plus", "minus", "times", "divided by"];
#[rustfmt::skip]
const FUNCTION_WORDS: &[&str] = &[
    "the", "a", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "was", "on", "by", "at", "from",
    "this", "or", "an", "but", "not", "are", "were", "his", "her", "their", "some", "every", "no", "very", "then",
    "after", "before", "under", "over", "near", "into", "about", "without",
];

/// Seeded sentence source; see the module documentation. The generator itself holds no
/// random state: callers pass the RNG, so a sentence is a pure function of RNG state.
#[derive(Debug, Clone)]
pub struct SentenceGenerator {
    words: Vec<String>,
}

impl SentenceGenerator {
    /// A generator drawing word-list sentences from `list`.
    pub fn new(list: &WordList) -> Result<Self> {
        if list.words.is_empty() {
            return Err(Error::config(format!(
                "word list {} has no usable words",
                list.source
            )));
        }
        Ok(SentenceGenerator {
            words: list.words.clone(),
        })
    }

    /// One sentence: a command with probability [`COMMAND_FRACTION`], else a word-list sentence.
    pub fn sentence<R: Rng + ?Sized>(&self, rng: &mut R) -> Sentence {
        if rng.gen_bool(COMMAND_FRACTION) {
            let kind = SentenceKind::ALL[rng.gen_range(0..SentenceKind::ALL.len() - 1)];
            self.command(kind, rng)
        } else {
            self.word_sentence(rng)
        }
    }

    /// Draws sentences until one is not in `seen`, adds it there and returns it (sentences
    /// must be disjoint between splits). Gives up after many draws in a row hit `seen`, which
    /// means the word list is too small for the requested corpus.
    pub fn unique_sentence<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        seen: &mut HashSet<String>,
    ) -> Result<Sentence> {
        const MAX_DRAWS: usize = 10_000;
        for _ in 0..MAX_DRAWS {
            let s = self.sentence(rng);
            if seen.insert(s.text.clone()) {
                return Ok(s);
            }
        }
        Err(Error::config(format!(
            "{MAX_DRAWS} sentences in a row were repeats after {} distinct ones; use a larger word list",
            seen.len()
        )))
    }

    /// A word-list sentence: 4 to 12 list words with function words between some of them.
    pub fn word_sentence<R: Rng + ?Sized>(&self, rng: &mut R) -> Sentence {
        let n = rng.gen_range(4..=12);
        let mut out: Vec<&str> = Vec::with_capacity(2 * n);
        for i in 0..n {
            if i == 0 || rng.gen_bool(0.4) {
                out.push(FUNCTION_WORDS.choose(rng).copied().unwrap_or("the"));
            }
            out.push(&self.words[rng.gen_range(0..self.words.len())]);
        }
        Sentence {
            text: out.join(" "),
            kind: SentenceKind::WordList,
            question: false,
        }
    }

    /// A voice-assistant command of the given kind (`WordList` gives a word-list sentence).
    pub fn command<R: Rng + ?Sized>(&self, kind: SentenceKind, rng: &mut R) -> Sentence {
        let pick = |rng: &mut R, list: &[&'static str]| -> &'static str {
            list[rng.gen_range(0..list.len())]
        };
        let mut question = false;
        let text = match kind {
            SentenceKind::Timer => {
                let label = pick(rng, TIMER_LABELS);
                match rng.gen_range(0..6) {
                    0 => format!("set a timer for {}", duration(rng)),
                    1 => format!("set a {label} timer for {}", duration(rng)),
                    2 => {
                        question = true;
                        format!("how much time is left on the {label} timer")
                    }
                    3 => format!("cancel the {label} timer"),
                    4 => format!("add {} to the {label} timer", duration(rng)),
                    _ => format!("start a {} countdown", duration(rng)),
                }
            }
            SentenceKind::Alarm => match rng.gen_range(0..5) {
                0 => format!("wake me up at {}", clock_time(rng)),
                1 => format!("set an alarm for {} {}", clock_time(rng), pick(rng, WHEN)),
                2 => format!("turn off my {} alarm", clock_time(rng)),
                3 => format!("snooze for {}", duration(rng)),
                _ => {
                    question = true;
                    format!("what alarms do i have {}", pick(rng, WHEN))
                }
            },
            SentenceKind::Lights => {
                let room = pick(rng, ROOMS);
                match rng.gen_range(0..6) {
                    0 => format!(
                        "turn {} the {room} lights",
                        if rng.gen_bool(0.5) { "on" } else { "off" }
                    ),
                    1 => format!(
                        "dim the {room} lights to {} percent",
                        spell_number(rng.gen_range(1..=100))
                    ),
                    2 => format!("set the {room} lights to {}", pick(rng, COLOURS)),
                    3 => format!(
                        "switch {} the {} in the {room}",
                        if rng.gen_bool(0.5) { "on" } else { "off" },
                        pick(rng, DEVICES)
                    ),
                    4 => format!(
                        "set the thermostat to {} degrees",
                        spell_number(rng.gen_range(55..=85))
                    ),
                    _ => {
                        question = true;
                        format!("is the {} in the {room} still on", pick(rng, DEVICES))
                    }
                }
            }
            SentenceKind::Weather => {
                question = rng.gen_bool(0.8);
                let city = pick(rng, CITIES);
                match rng.gen_range(0..5) {
                    0 => format!("what is the weather in {city} {}", pick(rng, WHEN)),
                    1 => format!("will it rain in {city} {}", pick(rng, WHEN)),
                    2 => format!("how cold will it be {}", pick(rng, WHEN)),
                    3 => format!("do i need an umbrella in {city} {}", pick(rng, WHEN)),
                    _ => format!("what is the temperature in {city} right now"),
                }
            }
            SentenceKind::Music => match rng.gen_range(0..6) {
                0 => format!(
                    "play some {} {}",
                    pick(rng, GENRES),
                    pick(rng, MUSIC_THINGS)
                ),
                1 => format!("play {} {} music", pick(rng, MOODS), pick(rng, GENRES)),
                2 => format!(
                    "turn the volume {} to {}",
                    if rng.gen_bool(0.5) { "up" } else { "down" },
                    spell_number(rng.gen_range(1..=10))
                ),
                3 => "skip to the next song".to_string(),
                4 => format!("play the {} by {}", pick(rng, MUSIC_THINGS), full_name(rng)),
                _ => format!(
                    "shuffle my {} {}",
                    pick(rng, MOODS),
                    pick(rng, MUSIC_THINGS)
                ),
            },
            SentenceKind::Call => match rng.gen_range(0..5) {
                0 => format!("call {}", full_name(rng)),
                1 => format!(
                    "call {} on {} phone",
                    pick(rng, FIRST_NAMES),
                    if rng.gen_bool(0.5) { "her" } else { "his" }
                ),
                2 => format!("dial {}", phone_number(rng)),
                3 => format!(
                    "send a message to {} saying {}",
                    pick(rng, FIRST_NAMES),
                    pick(rng, MESSAGES)
                ),
                _ => format!("video call {}", pick(rng, FIRST_NAMES)),
            },
            SentenceKind::Numbers => {
                question = rng.gen_bool(0.7);
                match rng.gen_range(0..4) {
                    0 => format!(
                        "what is {} {} {}",
                        spell_number(rng.gen_range(0..1000)),
                        pick(rng, OPERATIONS),
                        spell_number(rng.gen_range(1..100))
                    ),
                    1 => {
                        let (a, b) = UNITS[rng.gen_range(0..UNITS.len())];
                        format!("how many {a} are in a {b}")
                    }
                    2 => format!(
                        "convert {} dollars to euros",
                        spell_number(rng.gen_range(1..100_000))
                    ),
                    _ => format!(
                        "what is {} percent of {}",
                        spell_number(rng.gen_range(1..100)),
                        spell_number(rng.gen_range(1..10_000))
                    ),
                }
            }
            SentenceKind::Date => match rng.gen_range(0..4) {
                0 => format!("remind me to {} on {}", pick(rng, TASKS), date(rng)),
                1 => {
                    question = true;
                    format!("what day of the week is {}", date(rng))
                }
                2 => format!(
                    "schedule a meeting with {} on {}",
                    full_name(rng),
                    date(rng)
                ),
                _ => {
                    question = true;
                    format!("how many days until {}", date(rng))
                }
            },
            SentenceKind::Time => match rng.gen_range(0..4) {
                0 => {
                    question = true;
                    format!("what time is it in {}", pick(rng, CITIES))
                }
                1 => format!("remind me to {} at {}", pick(rng, TASKS), clock_time(rng)),
                2 => format!(
                    "book a table for {} at {}",
                    spell_number(rng.gen_range(2..=8)),
                    clock_time(rng)
                ),
                _ => format!("add {} to my shopping list", pick(rng, ITEMS)),
            },
            SentenceKind::Names => match rng.gen_range(0..4) {
                0 => format!("text {} that {}", full_name(rng), pick(rng, MESSAGES)),
                1 => {
                    question = true;
                    format!("when is {} birthday", possessive_free_name(rng))
                }
                2 => format!("add {} to my contacts", full_name(rng)),
                _ => format!("navigate to {} house", possessive_free_name(rng)),
            },
            SentenceKind::WordList => return self.word_sentence(rng),
        };
        Sentence {
            text,
            kind,
            question,
        }
    }
}

/// A duration: "five minutes", "an hour and a half", "two hours and ten minutes" ...
fn duration<R: Rng + ?Sized>(rng: &mut R) -> String {
    match rng.gen_range(0..6) {
        0 => format!("{} seconds", spell_number(rng.gen_range(2..=90))),
        1 | 2 => format!("{} minutes", spell_number(rng.gen_range(2..=90))),
        3 => "an hour and a half".to_string(),
        4 => format!("{} hours", spell_number(rng.gen_range(2..=12))),
        _ => format!(
            "one hour and {} minutes",
            spell_number(rng.gen_range(2..=59))
        ),
    }
}

/// A clock time: "seven thirty in the evening", "quarter past six", "noon" ...
fn clock_time<R: Rng + ?Sized>(rng: &mut R) -> String {
    let h = rng.gen_range(1..=12);
    let hour = spell_number(h);
    match rng.gen_range(0..7) {
        0 => format!("{hour} o clock"),
        1 => format!("quarter past {hour}"),
        2 => format!("half past {hour}"),
        3 => format!("quarter to {hour}"),
        4 => {
            if rng.gen_bool(0.5) {
                "noon".to_string()
            } else {
                "midnight".to_string()
            }
        }
        _ => {
            let m = rng.gen_range(1..60);
            let minutes = if m < 10 {
                format!("oh {}", spell_number(m))
            } else {
                spell_number(m)
            };
            // "in the morning" rather than "a m": flite reads a lone "a" as the article.
            format!(
                "{hour} {minutes} in the {}",
                ["morning", "afternoon", "evening"][rng.gen_range(0..3)]
            )
        }
    }
}

/// A date: "march third", "the twenty first of june", "next tuesday".
fn date<R: Rng + ?Sized>(rng: &mut R) -> String {
    let month = MONTHS[rng.gen_range(0..MONTHS.len())];
    let day = spell_ordinal(rng.gen_range(1..=28));
    match rng.gen_range(0..3) {
        0 => format!("{month} {day}"),
        1 => format!("the {day} of {month}"),
        _ => format!("next {}", DAYS[rng.gen_range(0..DAYS.len())]),
    }
}

/// A phone number read digit by digit.
fn phone_number<R: Rng + ?Sized>(rng: &mut R) -> String {
    let n = if rng.gen_bool(0.5) { 7 } else { 10 };
    (0..n)
        .map(|_| ONES[rng.gen_range(0..10)])
        .collect::<Vec<_>>()
        .join(" ")
}

fn full_name<R: Rng + ?Sized>(rng: &mut R) -> String {
    let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
    if rng.gen_bool(0.6) {
        format!("{first} {}", SURNAMES[rng.gen_range(0..SURNAMES.len())])
    } else {
        first.to_string()
    }
}

/// "my sister" / "the smith family" style phrases, avoiding apostrophes in the transcript.
fn possessive_free_name<R: Rng + ?Sized>(rng: &mut R) -> String {
    match rng.gen_range(0..3) {
        0 => format!("the {} family", SURNAMES[rng.gen_range(0..SURNAMES.len())]),
        1 => format!(
            "my {}",
            ["sister", "brother", "mother", "father", "friend", "cousin", "boss"]
                [rng.gen_range(0..7)]
        ),
        _ => format!(
            "my friend {}",
            FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())]
        ),
    }
}
