mod cli;
mod credentials;
mod execute;
mod lifecycle;
mod mesh;
mod protocol;
mod recovery;
mod supabase_sql;
