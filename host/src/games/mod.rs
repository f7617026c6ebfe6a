//! The game framework: games, players and what an episode records.
//!
//! The principal types:
//! - [`Game`]: a dialogue game registered by name ([`find_game`], [`all_games`]).
//!   It plays one instance as an [`Episode`] and scores a finished one.
//! - [`Episode`]: the game master's toolkit for one instance. It holds the
//!   [`Player`]s (each with its message history), asks them for answers,
//!   and records every event (`interactions.json`) and every model call
//!   (`player_N.requests.json`) exactly as clemcore 3.7 does.
//! - [`PlayerModel`]: who answers for a player: the game's scripted answer
//!   (`mock`/`programmatic`), a person at the terminal (`human`/`terminal`),
//!   or a model behind a plugin ([`ChatModel`], implemented by the runner
//!   with retries, deadlines and concurrency limits).
//! - [`instances`]: reading clembench-format `instances.json` files.

pub mod hellogame;
pub mod instances;

use crate::results::schema::{
    ActionRecord, CallRecordFile, EventRecord, InteractionsMeta, InteractionsRecord, Ordered,
    PlayerModels, PlayerRecord, RequestsMeta, RequestsRecord, RoundCall,
};
use crate::results::{Timestamp, CLEM_VERSION};
use crate::runner::StopToken;
use clemhost_plugin_sdk::{BackendError, Message};
use serde_json::{json, Map, Value};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

/// A dialogue game.
pub trait Game: Send + Sync {
    /// The name used with `-g` and in the results tree.
    fn name(&self) -> &'static str;
    /// One line for listings.
    fn description(&self) -> &'static str;
    /// How many models the game takes on the command line (clemcore's `players`).
    fn model_players(&self) -> usize;
    /// The `instances.json` shipped with clemhost (used when
    /// `games/<name>/in/instances.json` is not found on disk).
    fn shipped_instances(&self) -> &'static str;
    /// Plays one instance. `models` has exactly [`Game::model_players`] entries.
    fn play(
        &self,
        instance: &Map<String, Value>,
        models: &[PlayerModel],
        episode: &mut Episode,
    ) -> Result<(), EpisodeError>;
    /// Scores a finished episode from its `interactions.json`: returns the
    /// `round scores` and `episode scores` objects of `scores.json`.
    fn score(&self, interactions: &Value) -> Result<EpisodeScores, String>;
}

/// What [`Game::score`] returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpisodeScores {
    /// Per round (`"0"`, `"1"`, ...): metric name → value.
    pub round_scores: Map<String, Value>,
    /// Episode metrics; `Main Score` is mandatory.
    pub episode_scores: Map<String, Value>,
}

/// Every game clemhost knows.
pub fn all_games() -> Vec<&'static dyn Game> {
    vec![&hellogame::HelloGame]
}

/// The game with this name.
pub fn find_game(name: &str) -> Option<&'static dyn Game> {
    all_games().into_iter().find(|g| g.name() == name)
}

/// Why an episode ended without finishing.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    /// A model call failed for good (after retries where they apply).
    #[error("{player} ({model}): {error}")]
    Backend {
        /// `Player 1`.
        player: String,
        /// The model's name.
        model: String,
        /// The backend's typed error (boxed: it is large and rare).
        error: Box<BackendError>,
    },
    /// The person at the terminal ended the input.
    #[error("{0}")]
    Human(String),
    /// The run was interrupted (Ctrl-C) while this episode was playing.
    #[error("interrupted")]
    Interrupted,
    /// The game itself could not continue (e.g. a bad instance).
    #[error("{0}")]
    Game(String),
}

impl EpisodeError {
    /// The error's type name as written into `error.json` (`error` field).
    pub fn type_name(&self) -> String {
        match self {
            EpisodeError::Backend { error, .. } => {
                let camel: String = error
                    .kind
                    .as_str()
                    .split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect();
                format!("{camel}Error")
            }
            EpisodeError::Human(_) => "HumanInputError".into(),
            EpisodeError::Interrupted => "Interrupted".into(),
            EpisodeError::Game(_) => "GameError".into(),
        }
    }
}

/// One attempt of a model call, as recorded in the requests file.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// When the call was recorded (`call.timestamp`).
    pub timestamp: Timestamp,
    /// `manipulated_prompt_obj`.
    pub prompt: Value,
    /// `raw_response_obj`.
    pub response: Value,
    /// For a failed attempt: the typed error (written as `call.error`).
    pub error: Option<BackendError>,
}

/// The answer of a model behind a plugin, with every attempt it took.
#[derive(Clone, Debug)]
pub struct ModelReply {
    /// Every attempt, failed ones first, in order.
    pub attempts: Vec<CallRecord>,
    /// The answer text, or the error of the last attempt.
    pub outcome: Result<String, BackendError>,
    /// Tokens used by the successful attempt, when the backend reported them.
    pub tokens: u64,
}

/// A model behind a plugin, as a player sees it. The runner implements it
/// (retries, deadlines, cancellation, concurrency limits).
pub trait ChatModel: Send + Sync {
    /// The model's name (`model_name` in the results).
    fn name(&self) -> &str;
    /// Answers the conversation `messages` (history plus the new user turn).
    fn generate(&self, messages: &[Message]) -> ModelReply;
}

/// Who answers for a player.
#[derive(Clone)]
pub enum PlayerModel {
    /// The game's scripted answer (`mock`, `programmatic`); the name is recorded.
    Programmed(String),
    /// A person typing at the terminal (`human`, `terminal`).
    Human(String),
    /// A model behind a plugin.
    Model(Arc<dyn ChatModel>),
}

impl std::fmt::Debug for PlayerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlayerModel::Programmed(n) => write!(f, "Programmed({n})"),
            PlayerModel::Human(n) => write!(f, "Human({n})"),
            PlayerModel::Model(m) => write!(f, "Model({})", m.name()),
        }
    }
}

impl PlayerModel {
    /// The scripted player the game master uses for its own roles.
    pub fn programmatic() -> Self {
        PlayerModel::Programmed("programmatic".into())
    }

    /// The name recorded for this model.
    pub fn name(&self) -> &str {
        match self {
            PlayerModel::Programmed(n) | PlayerModel::Human(n) => n,
            PlayerModel::Model(m) => m.name(),
        }
    }
}

/// A player in an episode: its role, its model and its message history
/// (`user` contexts from the game master, its own `assistant` replies).
#[derive(Debug)]
pub struct Player {
    /// `Player 1`, `Player 2`, ...
    pub name: String,
    /// The game role (clemcore: the Player class name), e.g. `Greeter`.
    pub game_role: String,
    /// Who answers.
    pub model: PlayerModel,
    /// The conversation so far.
    pub history: Vec<Message>,
    calls: Vec<(usize, CallRecord)>,
}

/// Index of a player in an [`Episode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerId(usize);

/// Reads a person's answers. The runner shares one terminal between episodes.
pub type HumanInput = Arc<Mutex<dyn FnMut(&str, &str) -> Option<String> + Send>>;

/// A [`HumanInput`] that prints the context on stderr and reads a line from stdin.
pub fn terminal_input() -> HumanInput {
    Arc::new(Mutex::new(|role: &str, context: &str| {
        let mut err = std::io::stderr();
        let _ = write!(err, "\n{context}\nYour response as {role}:\n");
        let _ = err.flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
        }
    }))
}

/// Who an episode is, for the files it writes.
#[derive(Clone, Debug)]
pub struct EpisodeInfo {
    /// The game's name.
    pub game_name: String,
    /// The experiment's name.
    pub experiment_name: String,
    /// The instance's `game_id`.
    pub game_id: u64,
    /// The run directory's name (`results_folder`).
    pub results_folder: String,
    /// `player_models` as written into run.json.
    pub player_models: PlayerModels,
}

/// One instance being played: players, rounds of events and model calls.
pub struct Episode {
    info: EpisodeInfo,
    players: Vec<Player>,
    rounds: Vec<Vec<EventRecord>>,
    human: HumanInput,
    stop: StopToken,
    requests: u64,
    tokens: u64,
}

impl Episode {
    /// A new episode with no players and one empty round.
    pub fn new(info: EpisodeInfo, human: HumanInput, stop: StopToken) -> Self {
        Episode {
            info,
            players: Vec::new(),
            rounds: vec![Vec::new()],
            human,
            stop,
            requests: 0,
            tokens: 0,
        }
    }

    /// Adds a player; the first is `Player 1`.
    pub fn add_player(&mut self, game_role: &str, model: PlayerModel) -> PlayerId {
        let id = self.players.len();
        self.players.push(Player {
            name: format!("Player {}", id + 1),
            game_role: game_role.to_string(),
            model,
            history: Vec::new(),
            calls: Vec::new(),
        });
        PlayerId(id)
    }

    /// The player with this id.
    pub fn player(&self, id: PlayerId) -> &Player {
        &self.players[id.0]
    }

    /// Starts a new round (a new list in `turns`).
    pub fn next_round(&mut self) {
        self.rounds.push(Vec::new());
    }

    fn current_round(&self) -> usize {
        self.rounds.len() - 1
    }

    fn log(&mut self, from: &str, to: &str, kind: &str, content: &str, label: Option<&str>) {
        let mut extra = Map::new();
        if let Some(label) = label {
            extra.insert("label".into(), label.into());
        }
        let event = EventRecord {
            from: from.into(),
            to: to.into(),
            timestamp: Timestamp::now().iso(),
            action: ActionRecord {
                kind: kind.into(),
                content: content.into(),
                extra,
            },
        };
        self.rounds
            .last_mut()
            .expect("an episode always has at least one round")
            .push(event);
    }

    /// Logs a game master event (`GM` → `GM`), e.g. the outcome.
    pub fn log_event(&mut self, action_type: &str, content: &str) {
        self.log("GM", "GM", action_type, content, None);
    }

    /// Sends `context` to a player and returns its answer. Logs the
    /// `send message` and `get message` events, extends the player's
    /// history, and records the call. `scripted` gives the answer of a
    /// programmed player (clemcore's `_custom_response`).
    pub fn ask(
        &mut self,
        id: PlayerId,
        context: &str,
        scripted: impl FnOnce() -> String,
    ) -> Result<String, EpisodeError> {
        if self.stop.is_stopped() {
            return Err(EpisodeError::Interrupted);
        }
        let name = self.players[id.0].name.clone();
        self.log("GM", &name, "send message", context, Some("context"));
        let user = Message::new("user", context);
        let round = self.current_round();
        let model = self.players[id.0].model.clone();
        let text = match &model {
            PlayerModel::Programmed(model_name) | PlayerModel::Human(model_name) => {
                let text = match &model {
                    PlayerModel::Human(_) => {
                        let role = self.players[id.0].game_role.clone();
                        let mut read = self.human.lock().unwrap_or_else(|p| p.into_inner());
                        (read)(&role, context).ok_or_else(|| {
                            EpisodeError::Human(format!(
                                "no answer for {name} ({role}): the terminal input ended"
                            ))
                        })?
                    }
                    _ => scripted(),
                };
                let record = CallRecord {
                    timestamp: Timestamp::now(),
                    prompt: serde_json::to_value(&user).expect("a message serialises"),
                    response: json!({"clem_player": {"response": text, "model_name": model_name}}),
                    error: None,
                };
                self.players[id.0].calls.push((round, record));
                text
            }
            PlayerModel::Model(chat) => {
                let mut messages = self.players[id.0].history.clone();
                messages.push(user.clone());
                let reply = chat.generate(&messages);
                self.requests += 1;
                for a in reply.attempts {
                    self.players[id.0].calls.push((round, a));
                }
                match reply.outcome {
                    Ok(text) => {
                        self.tokens += reply.tokens;
                        text
                    }
                    Err(error) => {
                        if error.kind == clemhost_plugin_sdk::ErrorKind::Cancelled
                            && self.stop.is_stopped()
                        {
                            return Err(EpisodeError::Interrupted);
                        }
                        return Err(EpisodeError::Backend {
                            player: name,
                            model: chat.name().to_string(),
                            error: Box::new(error),
                        });
                    }
                }
            }
        };
        if let PlayerModel::Programmed(_) | PlayerModel::Human(_) = model {
            self.requests += 1;
        }
        let player = &mut self.players[id.0];
        player.history.push(user);
        player.history.push(Message::new("assistant", text.clone()));
        self.log(&name, "GM", "get message", &text, Some("response"));
        Ok(text)
    }

    /// Model calls made (one per answer, retries not counted).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Tokens reported by backends.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// `interactions.json`.
    pub fn interactions(&self, completed: bool) -> InteractionsRecord {
        let mut players = Ordered::default();
        players.insert(
            "GM",
            PlayerRecord {
                game_role: "Game Master".into(),
                model_name: "programmatic".into(),
            },
        );
        for p in &self.players {
            players.insert(
                p.name.clone(),
                PlayerRecord {
                    game_role: p.game_role.clone(),
                    model_name: p.model.name().into(),
                },
            );
        }
        InteractionsRecord {
            meta: InteractionsMeta {
                game_name: self.info.game_name.clone(),
                experiment_name: self.info.experiment_name.clone(),
                game_id: self.info.game_id,
                results_folder: self.info.results_folder.clone(),
                clem_version: CLEM_VERSION.into(),
                round_count: self.rounds.len() as u64,
                completed,
            },
            player_models: self.info.player_models.clone(),
            players,
            turns: self.rounds.clone(),
            logged: Map::new(),
        }
    }

    /// `player_N.requests.json` for every player with at least one recorded
    /// call: (file name, content).
    pub fn requests_files(&self, completed: bool) -> Vec<(String, RequestsRecord)> {
        self.players
            .iter()
            .filter(|p| !p.calls.is_empty())
            .map(|p| {
                let calls = p
                    .calls
                    .iter()
                    .map(|(round, c)| RoundCall {
                        round: *round as u64,
                        call: CallRecordFile {
                            timestamp: c.timestamp.iso(),
                            manipulated_prompt_obj: c.prompt.clone(),
                            raw_response_obj: c.response.clone(),
                            error: c.error.as_ref().map(|e| {
                                serde_json::to_value(e).expect("a BackendError serialises")
                            }),
                        },
                    })
                    .collect();
                let record = RequestsRecord {
                    meta: RequestsMeta {
                        game_name: self.info.game_name.clone(),
                        experiment_name: self.info.experiment_name.clone(),
                        game_id: self.info.game_id,
                        player_name: p.name.clone(),
                        game_role: p.game_role.clone(),
                        model_name: p.model.name().into(),
                        round_count: self.rounds.len() as u64,
                        completed,
                    },
                    calls,
                };
                (crate::results::files::requests(&p.name), record)
            })
            .collect()
    }
}
