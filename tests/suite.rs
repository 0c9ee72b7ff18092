mod cli;
mod execute;
mod lifecycle;
mod mesh;
mod protocol;
mod recovery;
