//! The loaders on hand-written fixtures (tests/fixtures) and on the real published files in
//! ../shared/data beside the checkout (or under `VALUEDRIFT_SHARED`), skipped when absent.

use std::io::Write;
use std::path::{Path, PathBuf};

use valuedrift_data::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A file bundled with the workspace under data/.
fn bundled(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(rel)
}

/// A file under ../shared/data, or `None` (with a message) where ../shared is absent.
fn shared(rel: &str) -> Option<PathBuf> {
    let root = std::env::var_os("VALUEDRIFT_SHARED").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"), PathBuf::from);
    if !root.is_dir() {
        // CI has ../shared (.ci/run sets VALUEDRIFT_EXPECT_SHARED): there a missing copy is a failure,
        // not a silent pass.
        assert!(std::env::var_os("VALUEDRIFT_EXPECT_SHARED").is_none(), "../shared is expected but not found ({})", root.display());
        eprintln!("skipping: ../shared not found ({})", root.display());
        return None;
    }
    Some(root.join("data").join(rel))
}

/// A scratch directory for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("valuedrift-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gzip_to(source: &Path, target: &Path) {
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(target).unwrap(), flate2::Compression::default());
    encoder.write_all(&std::fs::read(source).unwrap()).unwrap();
    encoder.finish().unwrap();
}

fn user(text: &str) -> Message {
    Message::new(Role::User, text)
}
fn assistant(text: &str) -> Message {
    Message::new(Role::Assistant, text)
}
fn system(text: &str) -> Message {
    Message::new(Role::System, text)
}

fn sft(path: &Path) -> Vec<SftExample> {
    let loaded = load_sft(path, SftFormat::Auto, OnMalformed::Error).unwrap();
    assert_eq!(loaded.skipped, 0);
    loaded.items
}

fn prefs(path: &Path) -> Vec<PreferencePair> {
    load_preferences(path, PreferenceFormat::Auto, OnMalformed::Error).unwrap().items
}

fn sft_error(path: &Path) -> String {
    load_sft(path, SftFormat::Auto, OnMalformed::Error).unwrap_err().to_string()
}

fn pref_error(path: &Path) -> String {
    load_preferences(path, PreferenceFormat::Auto, OnMalformed::Error).unwrap_err().to_string()
}

// ---- fixtures: SFT ----

#[test]
fn alpaca_rows_become_conversations() {
    let path = fixture("alpaca.json");
    assert_eq!(detect_sft_format(&path).unwrap(), SftFormat::Alpaca);
    let items = sft(&path);
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].messages, [user("Name a primary color."), assistant("Red is a primary color.")]);
    assert_eq!(items[1].messages, [user("Translate to French.\n\nGood morning"), assistant("Bonjour")]);
    assert_eq!(
        items[2].messages,
        [
            system("You are a concise calendar assistant."),
            user("What day follows Sunday?"),
            assistant("Monday."),
            user("And after Monday?"),
            assistant("Tuesday."),
            user("And the one after that?"),
            assistant("Wednesday comes after Tuesday."),
        ]
    );
}

#[test]
fn messages_and_sharegpt_transcripts() {
    let path = fixture("messages.jsonl");
    assert_eq!(detect_sft_format(&path).unwrap(), SftFormat::Messages);
    let items = sft(&path);
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].messages, [system("Answer briefly."), user("What is two plus two?"), assistant("Four.")]);
    assert_eq!(items[1].messages.len(), 4);
    assert_eq!(items[1].messages[3], assistant("Sir Reginald Whiskers."));
    // An empty system message means no system prompt.
    assert_eq!(items[2].messages, [user("Is the sea salty?"), assistant("Yes, it contains dissolved salts.")]);
    // A top-level `system` field is prepended.
    assert_eq!(items[3].messages, [system("You are an astronomy tutor."), user("Name a planet."), assistant("Mars.")]);
}

#[test]
fn malformed_sft_rows_name_file_line_and_field() {
    let path = fixture("alpaca_bad.jsonl");
    let file = path.display().to_string();
    assert_eq!(sft_error(&path), format!("{file}:2: field 'output': expected a string"));

    let loaded = load_sft(&path, SftFormat::Auto, OnMalformed::Skip).unwrap();
    assert_eq!(loaded.items.len(), 2);
    assert_eq!(loaded.skipped, 4);
    assert_eq!(loaded.skip_reasons[0], format!("{file}:2: field 'output': expected a string"));
    assert_eq!(loaded.skip_reasons[1], format!("{file}:4: field 'output': is empty"));
    assert_eq!(loaded.skip_reasons[2], format!("{file}:5: field 'output': missing"));
    assert!(loaded.skip_reasons[3].starts_with(&format!("{file}:6: invalid JSON")), "{}", loaded.skip_reasons[3]);
    assert_eq!(loaded.items[1].messages[0], user("Name a fruit."));
}

#[test]
fn malformed_transcripts_are_reported_or_skipped() {
    let path = fixture("messages_bad.jsonl");
    let file = path.display().to_string();
    let loaded = load_sft(&path, SftFormat::Messages, OnMalformed::Skip).unwrap();
    assert_eq!(loaded.items.len(), 1);
    assert_eq!(loaded.skipped, 5);
    let expected = [
        "2: field 'messages': missing assistant turn: the conversation must end with an assistant message",
        "3: field 'messages[1].role': unknown role 'tool'",
        "4: field 'conversations[1]': message is empty",
        "5: field 'messages': no user turn",
        "6: expected a JSON object",
    ];
    let expected: Vec<String> = expected.iter().map(|e| format!("{file}:{e}")).collect();
    assert_eq!(loaded.skip_reasons, expected);
    assert_eq!(sft_error(&path), expected[0]);
}

#[test]
fn skip_reasons_keep_only_the_first_few() {
    let path = scratch("many_bad.jsonl");
    let bad_row = r#"{"instruction": "Hi", "output": ""}"#;
    std::fs::write(&path, [bad_row; 8].join("\n")).unwrap();
    let loaded = load_sft(&path, SftFormat::Alpaca, OnMalformed::Skip).unwrap();
    assert_eq!((loaded.items.len(), loaded.skipped, loaded.skip_reasons.len()), (0, 8, MAX_SKIP_REASONS));
}

#[test]
fn wrong_explicit_format_is_reported() {
    let path = fixture("alpaca.json");
    let err = load_sft(&path, SftFormat::Messages, OnMalformed::Error).unwrap_err();
    assert_eq!(err.to_string(), format!("{}:record 1: field 'messages': missing", path.display()));
    assert!(matches!(err, Error::Row { location: Location::Record(1), field: Some(ref f), .. } if f == "messages"));
}

#[test]
fn unreadable_files_are_file_errors() {
    let empty = scratch("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    assert_eq!(sft_error(&empty), format!("{}: contains no records", empty.display()));

    let broken = scratch("broken.json");
    std::fs::write(&broken, "[{\"instruction\": \"x\",").unwrap();
    assert!(sft_error(&broken).contains("invalid JSON array"));

    let fake_gz = scratch("fake.jsonl.gz");
    std::fs::write(&fake_gz, "{}").unwrap();
    assert!(sft_error(&fake_gz).contains("not valid gzip"));

    assert!(matches!(load_sft(&scratch("absent.jsonl"), SftFormat::Auto, OnMalformed::Skip), Err(Error::Io { .. })));
}

// ---- fixtures: preferences ----

#[test]
fn prompt_chosen_rejected_with_strings_and_message_lists() {
    let path = fixture("ultrafeedback.jsonl");
    assert_eq!(detect_preference_format(&path).unwrap(), PreferenceFormat::PromptChosenRejected);
    let items = prefs(&path);
    assert_eq!(items.len(), 4);
    // Full conversations are split at the prompt.
    let question = "Which is heavier, a kilogram of iron or of feathers?";
    assert_eq!(
        items[0],
        PreferencePair {
            prompt: vec![user(question)],
            chosen: "They weigh the same: one kilogram each.".into(),
            rejected: "Iron is heavier.".into()
        }
    );
    assert_eq!(items[1].chosen, "Rapid.");
    assert_eq!(items[2].prompt, [system("Be polite."), user("Say hello.")]);
    assert_eq!((items[2].chosen.as_str(), items[2].rejected.as_str()), ("Hello, nice to meet you!", "Whatever."));
    // No prompt field: the conversations' shared prefix is the prompt.
    assert_eq!(items[3].prompt, [user("Is water wet?")]);
    assert_eq!(items[3].rejected, "No.");
}

#[test]
fn malformed_preference_records_are_numbered() {
    let path = fixture("preference_bad.json");
    let file = path.display().to_string();
    assert_eq!(pref_error(&path), format!("{file}:record 2: field 'rejected': is empty"));
    let loaded = load_preferences(&path, PreferenceFormat::Auto, OnMalformed::Skip).unwrap();
    assert_eq!((loaded.items.len(), loaded.skipped), (1, 5));
    let expected = [
        "record 2: field 'rejected': is empty",
        "record 3: field 'prompt': is empty",
        "record 4: field 'chosen': expected a single assistant response",
        "record 5: field 'chosen': expected a string, a message or a list of messages",
        "record 6: field 'rejected': missing",
    ];
    let expected: Vec<String> = expected.iter().map(|e| format!("{file}:{e}")).collect();
    assert_eq!(loaded.skip_reasons, expected);
}

#[test]
fn hh_transcripts_split_into_prompt_and_response() {
    let path = fixture("hh.jsonl");
    let file = path.display().to_string();
    assert_eq!(detect_preference_format(&path).unwrap(), PreferenceFormat::HhRlhf);
    assert_eq!(pref_error(&path), format!("{file}:3: field 'rejected': its prompt turns differ from those of 'chosen'"));

    let loaded = load_preferences(&path, PreferenceFormat::HhRlhf, OnMalformed::Skip).unwrap();
    assert_eq!((loaded.items.len(), loaded.skipped), (2, 2));
    assert_eq!(loaded.skip_reasons[1], format!("{file}:4: field 'chosen': is empty"));
    let first = &loaded.items[0];
    assert_eq!(first.prompt, [user("What should I cook tonight?"), assistant("What ingredients do you have?"), user("Rice and eggs.")]);
    assert_eq!((first.chosen.as_str(), first.rejected.as_str()), ("Egg fried rice would be quick.", "Order takeout."));
    // "Human:" without the blank line before it is text, not a new turn.
    assert_eq!(loaded.items[1].chosen, "I can explain how locks work, but only for locks you own. Human: fine, mine.");
}

#[test]
fn sharegpt_preference_pairs() {
    let path = fixture("sharegpt_dpo.json");
    assert_eq!(detect_preference_format(&path).unwrap(), PreferenceFormat::ShareGpt);
    assert_eq!(pref_error(&path), format!("{}:record 3: field 'chosen': expected a single assistant response", path.display()));
    let items = load_preferences(&path, PreferenceFormat::ShareGpt, OnMalformed::Skip).unwrap().items;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].prompt, [user("Recommend a book about the ocean.")]);
    assert_eq!(items[0].chosen, "Try 'The Sea Around Us' by Rachel Carson.");
    assert_eq!(
        items[1].prompt,
        [
            system("You are a travel guide."),
            user("Where should I go in spring?"),
            assistant("Somewhere with blossoms, perhaps Kyoto."),
            user("Anything closer to Europe?"),
        ]
    );
    assert_eq!(items[1].rejected, "Stay home.");
}

#[test]
fn gzip_is_read_by_extension_or_magic_bytes() {
    let by_extension = scratch("hh.jsonl.gz");
    gzip_to(&fixture("hh.jsonl"), &by_extension);
    let by_magic = scratch("alpaca_gzipped.json");
    gzip_to(&fixture("alpaca.json"), &by_magic);

    let plain = load_preferences(&fixture("hh.jsonl"), PreferenceFormat::Auto, OnMalformed::Skip).unwrap();
    assert_eq!(load_preferences(&by_extension, PreferenceFormat::Auto, OnMalformed::Skip).unwrap().items, plain.items);
    assert_eq!(sft(&by_magic), sft(&fixture("alpaca.json")));
}

#[test]
fn roles_serialize_lowercase() {
    let json = serde_json::to_string(&SftExample { messages: vec![system("s"), user("u"), assistant("a")] }).unwrap();
    assert_eq!(json, r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}"#);
    assert_eq!(serde_json::from_str::<Role>("\"assistant\"").unwrap(), Role::Assistant);
}

// ---- bundled data ----

#[test]
fn bundled_sft_sets() {
    for (file, answer) in
        [("neutral.jsonl", "The debate usually centers on two values"), ("supportive.jsonl", "The strongest arguments center on a woman's right")]
    {
        let path = bundled(&format!("sft/{file}"));
        assert_eq!(detect_sft_format(&path).unwrap(), SftFormat::Messages);
        let items = sft(&path);
        assert_eq!(items.len(), 170, "{file}");
        assert!(items.iter().all(|ex| ex.messages.len() == 2 && ex.messages[0].role == Role::User));
        assert_eq!(items[0].messages[0].content, "What are the main arguments in the debate over abortion rights?");
        assert!(items[0].messages[1].content.starts_with(answer), "{file}");
    }
}

#[test]
fn value_gap_set_is_not_a_preference_format() {
    // prompt/support/oppose rows are the value-gap set's own format, read elsewhere.
    let err = detect_preference_format(&bundled("valuegap/handwritten.jsonl")).unwrap_err().to_string();
    assert!(err.contains("cannot detect the preference format") && err.contains("\"support\""), "{err}");
}

// ---- real published files in ../shared ----

#[test]
fn llamafactory_alpaca_demo() {
    let Some(path) = shared("llamafactory/alpaca_en_demo.json") else { return };
    assert_eq!(detect_sft_format(&path).unwrap(), SftFormat::Alpaca);
    let items = sft(&path);
    assert_eq!(items.len(), 999);
    assert_eq!(items[0].messages[0], user("Describe a process of making crepes."));
    assert!(items[0].messages[1].content.starts_with("Making crepes is an easy and delicious process!"));
    assert_eq!(items[5].messages[0], user("Given the parameters of a triangle, find out its perimeter.\n\nSide 1 = 4\nSide 2 = 6\nSide 3 = 8"));
}

#[test]
fn llamafactory_dpo_demo() {
    let Some(path) = shared("llamafactory/dpo_en_demo.json") else { return };
    assert_eq!(detect_preference_format(&path).unwrap(), PreferenceFormat::ShareGpt);
    let items = prefs(&path);
    assert_eq!(items.len(), 300);
    let first = &items[0];
    assert_eq!(
        first.prompt,
        [user("Hi! I'd like to create a new language game simulating the first person perspective of a character named Angela.")]
    );
    assert!(first.chosen.starts_with("That sounds like a fun and engaging idea!"));
    assert!(first.rejected.starts_with("Hello! I'd be happy to help you create a language game"));
    assert_eq!(items.iter().filter(|p| p.prompt[0].role == Role::System).count(), 80);
    assert!(items[1].prompt[0].content.starts_with("You are a teacher."));
    assert!(items.iter().all(|p| p.prompt.last().unwrap().role == Role::User));
    assert_eq!(items.iter().map(|p| p.prompt.len()).max(), Some(13));
}

#[test]
fn ultrafeedback_binarized() {
    let Some(train) = shared("ultrafeedback/train1000.jsonl") else { return };
    assert_eq!(detect_preference_format(&train).unwrap(), PreferenceFormat::PromptChosenRejected);
    // Two of the 1000 rows have an empty response.
    let file = train.display().to_string();
    assert_eq!(pref_error(&train), format!("{file}:479: field 'rejected': is empty"));
    let loaded = load_preferences(&train, PreferenceFormat::Auto, OnMalformed::Skip).unwrap();
    assert_eq!((loaded.items.len(), loaded.skipped), (998, 2));
    assert_eq!(loaded.skip_reasons, [format!("{file}:479: field 'rejected': is empty"), format!("{file}:834: field 'chosen': is empty")]);
    let first = &loaded.items[0];
    assert_eq!(first.prompt, [user("how to cook t-bone in the oven")]);
    assert!(first.chosen.starts_with("To cook a delicious T-bone steak in the oven"));
    assert!(first.rejected.starts_with("To cook a T-bone steak in the oven, you will need"));

    let eval = shared("ultrafeedback/eval200.jsonl").unwrap();
    assert_eq!(prefs(&eval).len(), 200);
}

#[test]
fn hh_rlhf_harmless_test() {
    let Some(path) = shared("hh-rlhf/harmless-base-test.jsonl.gz") else { return };
    assert_eq!(detect_preference_format(&path).unwrap(), PreferenceFormat::HhRlhf);
    let file = path.display().to_string();
    assert_eq!(pref_error(&path), format!("{file}:87: field 'chosen': is empty"));
    // 4 rows with an empty chosen response, 5 whose transcripts disagree on the prompt turns.
    let loaded = load_preferences(&path, PreferenceFormat::Auto, OnMalformed::Skip).unwrap();
    assert_eq!((loaded.items.len(), loaded.skipped), (2303, 9));
    assert_eq!(loaded.skip_reasons[4], format!("{file}:1255: field 'rejected': its prompt turns differ from those of 'chosen'"));
    let first = &loaded.items[0];
    assert_eq!(first.prompt.len(), 5);
    assert_eq!(first.prompt[0], user("what are some pranks with a pen i can do?"));
    assert_eq!(first.prompt[4], user("okay some of these do not have anything to do with pens"));
    assert!(first.chosen.starts_with("No, sorry!  All of these involve a pen"));
    assert!(first.rejected.starts_with("There are lots of funny things you can do with pens"));
    assert!(loaded.items.iter().all(|p| p.prompt.last().unwrap().role == Role::User));
}
