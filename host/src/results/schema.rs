//! The records of the results tree, one type per file, in clemcore 3.7.2's
//! schema (key names, nesting and key order as clemcore writes them; see
//! docs/results.md). Games and the runner build these values; the
//! functions of [`super`] write and read them. Fields clemcore leaves open
//! (the instance, a model's spec, a prompt or a raw response, the keys a
//! game logs with clemcore's `log_key`) stay JSON values.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;

/// A JSON object whose keys keep their order (Python dicts do), with typed values.
#[derive(Clone, Debug, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<V> Ordered<V> {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, keeping its place when it is already there (as a Python dict does).
    pub fn insert(&mut self, key: impl Into<String>, value: V) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Ordered::default();
                while let Some((k, v)) = a.next_entry::<String, V>()? {
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// One entry of `player_models`: the resolved registry entry and the generation arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayerModelRecord {
    /// The resolved registry entry (or the built-in player's spec).
    pub model_spec: Map<String, Value>,
    /// `{"temperature": ..., "max_tokens": ...}` as given to the models.
    pub gen_args: Map<String, Value>,
}

/// `player_models`: `{"0": {...}, "1": {...}}` (clemcore's `Model.to_infos`).
pub type PlayerModels = Ordered<PlayerModelRecord>;

/// Builds `player_models` from the models in player order.
pub fn player_models(models: impl IntoIterator<Item = PlayerModelRecord>) -> PlayerModels {
    Ordered(
        models
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i.to_string(), m))
            .collect(),
    )
}

/// `run.json`, in the run folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The clemcore version whose layout the tree follows.
    pub clem_version: String,
    /// When the run started (`isoformat()`).
    pub created: String,
    /// The models of the run.
    pub player_models: PlayerModels,
    /// One entry per game played into this folder.
    pub games: Ordered<GameRunRecord>,
}

/// One game's entry in `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GameRunRecord {
    /// Where the game lives.
    pub game_path: String,
    /// `isoformat()` before the first episode.
    pub benchmark_start: String,
    /// `isoformat()` after the last.
    pub benchmark_end: String,
    /// `str(timedelta)`.
    pub duration: String,
    /// `timedelta.total_seconds()`.
    pub duration_seconds: f64,
    /// Episodes in the run.
    pub num_instances: u64,
}

/// `experiment.json`: every key of the experiment except `game_instances`,
/// then `timestamp`, `game_name` and `player_models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// The experiment's own keys (`name`, ...), in file order.
    #[serde(flatten)]
    pub experiment: Map<String, Value>,
    /// When the file was written.
    pub timestamp: String,
    /// The game.
    pub game_name: String,
    /// The models the experiment's episodes were played with.
    pub player_models: PlayerModels,
}

/// `instance_NNNNN/interactions.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InteractionsRecord {
    /// Who and what the episode was.
    pub meta: InteractionsMeta,
    /// The models.
    pub player_models: PlayerModels,
    /// `GM`, `Player 1`, ...: role and model.
    pub players: Ordered<PlayerRecord>,
    /// One list of events per round.
    pub turns: Vec<Vec<EventRecord>>,
    /// Keys a game adds at the top level (clemcore's `log_key`).
    #[serde(flatten)]
    pub logged: Map<String, Value>,
}

/// `meta` of interactions.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InteractionsMeta {
    /// The game.
    pub game_name: String,
    /// The experiment.
    pub experiment_name: String,
    /// The instance's `game_id`.
    pub game_id: u64,
    /// The run folder's name.
    pub results_folder: String,
    /// The clemcore version.
    pub clem_version: String,
    /// Rounds played.
    pub round_count: u64,
    /// Whether the episode ended by the game's rules.
    pub completed: bool,
}

/// A player in interactions.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayerRecord {
    /// The game role (`Greeter`, `Game Master`).
    pub game_role: String,
    /// The model's name.
    pub model_name: String,
}

/// One event of a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// `GM`, `Player 1`, ...
    pub from: String,
    /// `GM`, `Player 1`, ...
    pub to: String,
    /// `isoformat()`.
    pub timestamp: String,
    /// What happened.
    pub action: ActionRecord,
}

/// An event's action: `type`, `content` and whatever else the game logs (`label`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// `send message`, `get message`, or a game's own type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The message or value.
    pub content: Value,
    /// Further keys, in order (`label`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `instance_NNNNN/player_N.requests.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestsRecord {
    /// Whose calls these are.
    pub meta: RequestsMeta,
    /// Every recorded call, in order.
    pub calls: Vec<RoundCall>,
}

/// `meta` of a requests file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestsMeta {
    /// The game.
    pub game_name: String,
    /// The experiment.
    pub experiment_name: String,
    /// The instance's `game_id`.
    pub game_id: u64,
    /// `Player 1`.
    pub player_name: String,
    /// The game role.
    pub game_role: String,
    /// The model's name.
    pub model_name: String,
    /// Rounds played.
    pub round_count: u64,
    /// Whether the episode ended by the game's rules.
    pub completed: bool,
}

/// One call and the round it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundCall {
    /// 0-based round.
    pub round: u64,
    /// The call.
    pub call: CallRecordFile,
}

/// A recorded model call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecordFile {
    /// `isoformat()`.
    pub timestamp: String,
    /// What was sent.
    pub manipulated_prompt_obj: Value,
    /// What came back.
    pub raw_response_obj: Value,
    /// For a failed attempt (clemhost only): the typed error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// `completed.json`: the episode finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletedRecord {
    /// `isoformat()`.
    pub timestamp: String,
}

/// `error.json`: the episode failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// `isoformat()`.
    pub timestamp: String,
    /// The error's type name (`RateLimitedError`, `GameError`).
    pub error: String,
    /// What went wrong.
    pub message: String,
    /// For backend errors: the error kind (`rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `scores.json`, written by `clemhost score`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoresRecord {
    /// interactions.json's `meta`.
    pub meta: Value,
    /// interactions.json's `player_models`.
    pub player_models: Value,
    /// interactions.json's `players`.
    pub players: Value,
    /// Per round: metric → value.
    #[serde(rename = "round scores")]
    pub round_scores: Map<String, Value>,
    /// Episode metrics (`Main Score`, ...).
    #[serde(rename = "episode scores")]
    pub episode_scores: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of clemcore's mock tree parses into its record and is
    /// written back with the same keys in the same order.
    #[test]
    fn records_round_trip_clemcore_files() {
        let run = r#"{"clem_version": "3.7.2", "created": "2026-11-29T08:17:55.838423",
            "player_models": {"0": {"model_spec": {"model_name": "mock", "backend": "_player_programmed"},
                                    "gen_args": {"temperature": 0.0, "max_tokens": 300}}},
            "games": {"b": {"game_path": "p", "benchmark_start": "s", "benchmark_end": "e",
                            "duration": "0:00:00.010534", "duration_seconds": 0.010534, "num_instances": 10},
                      "a": {"game_path": "p", "benchmark_start": "s", "benchmark_end": "e",
                            "duration": "0:00:01", "duration_seconds": 1.0, "num_instances": 1}}}"#;
        let v: Value = serde_json::from_str(run).expect("json");
        let r: RunRecord = serde_json::from_value(v.clone()).expect("run.json");
        assert_eq!(serde_json::to_value(&r).expect("ser"), v);
        assert_eq!(r.games.0[0].0, "b", "games keep their order");

        let exp = r#"{"name": "greet_en", "language": "en", "timestamp": "t", "game_name": "hellogame",
            "player_models": {"0": {"model_spec": {"model_name": "mock"}, "gen_args": {}}}}"#;
        let v: Value = serde_json::from_str(exp).expect("json");
        let e: ExperimentRecord = serde_json::from_value(v.clone()).expect("experiment.json");
        assert_eq!(e.experiment.len(), 2);
        let back = serde_json::to_value(&e).expect("ser");
        assert_eq!(back, v);
        assert_eq!(
            back.as_object().expect("object").keys().collect::<Vec<_>>(),
            [
                "name",
                "language",
                "timestamp",
                "game_name",
                "player_models"
            ]
        );
    }
}
