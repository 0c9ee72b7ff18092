-- The Supabase API roles. Cluster-wide (not per database), so the tests run this once per
-- test process before creating their databases; it tolerates roles that already exist.
\set ON_ERROR_STOP on

do $$
declare r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role', 'authenticator'] loop
    begin
      execute format('create role %I nologin noinherit', r);
    exception when duplicate_object or unique_violation then null;
    end;
  end loop;
end $$;
alter role authenticator login noinherit;
alter role service_role bypassrls;
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
grant anon, authenticated, service_role to authenticator;

