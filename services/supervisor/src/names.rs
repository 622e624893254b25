//! Container names: validation (Docker's rule) and generated `adjective_surname` names.
use crate::error::{Error, Result};

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "bell",
    "bhabha",
    "blackburn",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dirac",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "jackson",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "khorana",
    "knuth",
    "lamarr",
    "lamport",
    "leakey",
    "lovelace",
    "lumiere",
    "margulis",
    "mayer",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "minsky",
    "morse",
    "napier",
    "newton",
    "nobel",
    "noether",
    "pare",
    "pascal",
    "pasteur",
    "perlman",
    "pike",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "villani",
    "wescoff",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// Checks a user-given name (a leading `/` is allowed and dropped) and returns it bare.
pub fn validate(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(bare.to_string())
    } else {
        Err(Error::InvalidArgument(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// A Docker-like `adjective_surname` from random bytes; `retry > 0` appends a digit as
/// Docker does after a collision. `boring_wozniak` is never generated.
pub fn generate(random: &[u8], retry: u32) -> String {
    let byte = |i: usize| random.get(i).copied().unwrap_or(0) as usize;
    let a = (byte(0) << 8 | byte(1)) % ADJECTIVES.len();
    let s = (byte(2) << 8 | byte(3)) % SURNAMES.len();
    let mut name = format!("{}_{}", ADJECTIVES[a], SURNAMES[s]);
    if name == "boring_wozniak" {
        name = "boring_turing".to_string();
    }
    if retry > 0 {
        name.push_str(&(byte(4) % 10).to_string());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_pass_and_lose_the_slash() {
        assert_eq!(validate("web").unwrap(), "web");
        assert_eq!(validate("/web").unwrap(), "web");
        assert_eq!(validate("a.b-c_d9").unwrap(), "a.b-c_d9");
        assert_eq!(validate("9").unwrap(), "9");
    }

    #[test]
    fn invalid_names_are_named_in_the_error() {
        for bad in ["", "/", "-web", "_x", ".x", "we b", "wé", "a/b"] {
            let err = validate(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("({bad})")), "{err}");
        }
    }

    #[test]
    fn generated_names_are_valid_two_words() {
        for i in 0..=255u8 {
            let name = generate(
                &[i, i.wrapping_mul(7), i.wrapping_mul(13), i, i],
                (i % 2) as u32,
            );
            assert!(validate(&name).is_ok(), "{name}");
            assert_eq!(name.split('_').count(), 2, "{name}");
            assert_ne!(name, "boring_wozniak");
        }
        assert!(generate(&[0, 0, 0, 0, 3], 1).ends_with('3'));
    }
}
