-- What a fresh Supabase project database has before any app migration, reduced to what the
-- migrations and their row-level security need: the API roles, an auth schema with users and
-- the claim functions that read `request.jwt.claims`, and the Realtime publication. New
-- Supabase projects grant nothing by default, so neither does this: the migrations must grant
-- explicitly. The roles are cluster-wide: supabase_roles.sql creates them once per cluster.
\set ON_ERROR_STOP on

revoke all on schema public from public;
grant usage on schema public to anon, authenticated, service_role;
grant create on schema public to postgres;
alter default privileges in schema public revoke execute on functions from public;

create publication supabase_realtime;

create schema auth;
create table auth.users (
  id uuid primary key,
  email text unique,
  created_at timestamptz not null default now()
);
create function auth.uid() returns uuid language sql stable as $$
  select nullif(
    coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    ), '')::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
grant usage on schema auth to anon, authenticated, service_role;
grant execute on function auth.uid(), auth.role() to anon, authenticated, service_role;
