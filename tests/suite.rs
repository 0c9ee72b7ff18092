mod cli;
mod execute;
mod lifecycle;
mod mesh;
mod protocol;
mod recovery;
mod supabase_sql;
