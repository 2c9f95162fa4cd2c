// TEMP STUB (replaced by the tui helper's module)
pub struct ProjectDetail {
    pub view: crate::store::projects::ProjectView,
    pub env: Vec<crate::store::env::EnvVar>,
    pub events: Vec<crate::store::events::Event>,
    pub database_url: Option<String>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Alt(char),
    Enter,
    Esc,
    Backspace,
    Delete,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    F(u8),
}
pub enum Msg {
    Key(Key),
    Paste(String),
    Resize(u16, u16),
    Projects(Vec<crate::store::projects::ProjectView>),
    Detail(Box<ProjectDetail>),
    Done(Result<String, String>),
    Tick,
}
pub enum Effect {
    Quit,
    Intent {
        project: String,
        intent: crate::model::intent::Intent,
    },
    Create {
        name: String,
        description: String,
    },
    LoadDetail {
        project: String,
    },
    SetEnv {
        project: String,
        key: String,
        value: String,
        secret: bool,
    },
    UnsetEnv {
        project: String,
        key: String,
    },
}
pub struct App;
impl App {
    pub fn new(_: &str, _: u16, _: u16) -> App {
        App
    }
    pub fn update(&mut self, _m: Msg) -> Vec<Effect> {
        vec![]
    }
    pub fn view(&self, _f: &mut ratatui::Frame) {}
    pub fn animating(&self) -> bool {
        false
    }
    pub fn set_notice(&mut self, _t: &str) {}
    pub fn set_no_color(&mut self, _on: bool) {}
    pub fn set_now(&mut self, _n: chrono::DateTime<chrono::Utc>) {}
}
