mod cli;
mod execute;
mod lifecycle;
mod protocol;
mod recovery;
