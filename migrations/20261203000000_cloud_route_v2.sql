-- Helix Mesh: the cloud route v2. Every paired device reads every command, devices pair through
-- the cloud, and the database trusts only the hub with what the hub writes.
--
-- New objects beside v1's (`hub_presence`, `remote_commands`, `remote_command_events`), which
-- stay until the hub and the spoke have moved over:
--
-- - `cloud_hubs`: a hub registers itself under its user with a claim token only it holds (the
--   database keeps the token's SHA-256 in `helix_private`, which users cannot read). Every hub
--   function below takes `(p_hub_id, p_token)` and refuses with 42501 unless they match a
--   registration of the caller. Registration is trust on first use: the first token
--   registered for a (user, hub) pair is the only one accepted after.
-- - `cloud_presence`: where a hub can be dialed, keyed by (user, hub), written only by the hub.
-- - `cloud_commands`: one row per command, sent by a device through the cloud (`origin`
--   `cloud`, with the command sealed to the hub in `envelope`) or mirrored by the hub from
--   iroh or the local listener (`origin` `hub`). The hub adds the prompt, encrypted under the
--   command's content key, and `cloud_command_keys`: the content key sealed to each device
--   paired when the command started. `cloud_command_events`: the events, encrypted under the
--   content key and signed by the hub (helix_mesh::envelope_v2, docs/protocol.md).
-- - `cloud_pairings`: a device's pairing request sealed to the hub, and the hub's signed answer.
--
-- Devices (any session of the user) may insert commands and pairing requests, cancel their
-- user's commands, and read their user's rows. Nothing else: the server sets `created_at`,
-- bounds `expires_at`, every text is bounded in bytes (`octet_length`), and per-user caps bound
-- what one account can store. Finished commands are deleted by `prune_cloud`, which the hub
-- calls daily.
--
-- SQLSTATEs: 42501 (not allowed: no session, wrong claim token, a write devices may not make),
-- 22023 (bad argument), 23514 (a bound of a column), 23503 (a command for a hub that is not
-- registered), 23505 (a re-sent row that differs from the stored one), 54000 (a cap: too many
-- pending commands, pairings, hubs, keys or events), P0002 (no such row in the state the call
-- needs), 55000 (the row already ended).

create schema helix_private;
revoke all on schema helix_private from public, anon, authenticated;

-- Every element of `a` is at most `n` bytes (a check constraint cannot hold a subquery).
create function helix_private.texts_within(a text[], n integer) returns boolean
language sql immutable set search_path = '' as $$
  select coalesce(bool_and(octet_length(x) <= n), true) from unnest(a) as t(x)
$$;

-- `t` cut to at most `n` bytes, on a character boundary.
create function helix_private.cut_bytes(t text, n integer) returns text
language plpgsql immutable set search_path = '' as $$
declare
  v text := left(t, n);
begin
  while octet_length(v) > n loop
    v := left(v, length(v) - 1);
  end loop;
  return v;
end $$;

-- ---------------------------------------------------------------------------------- hubs
create table public.cloud_hubs (
  user_id       uuid not null default auth.uid() references auth.users (id) on delete cascade,
  hub_id        text not null check (hub_id ~ '^[0-9a-f]{64}$'),
  registered_at timestamptz not null default now(),
  primary key (user_id, hub_id)
);

create table helix_private.hub_tokens (
  user_id    uuid not null,
  hub_id     text not null,
  token_hash bytea not null check (octet_length(token_hash) = 32),
  primary key (user_id, hub_id),
  foreign key (user_id, hub_id) references public.cloud_hubs (user_id, hub_id) on delete cascade
);

alter table public.cloud_hubs enable row level security;
revoke all on public.cloud_hubs from public, anon, authenticated;
grant select on public.cloud_hubs to authenticated;
grant all on public.cloud_hubs to service_role;
create policy cloud_hubs_select on public.cloud_hubs for select to authenticated
  using (user_id = (select auth.uid()));

-- The caller, when `p_token` is the claim token `p_hub_id` registered under it; else 42501.
create function helix_private.hub_caller(p_hub_id text, p_token text) returns uuid
language plpgsql stable security definer set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
begin
  if v_uid is null then
    raise exception 'the cloud route needs a signed-in session' using errcode = '42501';
  end if;
  if p_token is null or p_token !~ '^[0-9a-f]{64}$' then
    raise exception 'a claim token is 64 lower-case hex digits' using errcode = '22023';
  end if;
  perform 1 from helix_private.hub_tokens
   where user_id = v_uid and hub_id = p_hub_id
     and token_hash = sha256(convert_to(p_token, 'UTF8'));
  if not found then
    raise exception 'hub % is not registered with this claim token', left(p_hub_id, 64)
      using errcode = '42501',
            hint = 'only the hub that registered itself may write what a hub writes';
  end if;
  return v_uid;
end $$;
revoke execute on function helix_private.hub_caller(text, text) from public;

-- Registers the calling hub under the caller's user with its claim token. Idempotent for the
-- same token; a different token for a registered hub is refused (42501). At most 16 hubs per
-- user (54000).
create function public.register_cloud_hub(p_hub_id text, p_token text) returns void
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
  v_hash bytea;
begin
  if v_uid is null then
    raise exception 'the cloud route needs a signed-in session' using errcode = '42501';
  end if;
  if p_hub_id is null or p_hub_id !~ '^[0-9a-f]{64}$' then
    raise exception 'a hub id is 64 lower-case hex digits' using errcode = '22023';
  end if;
  if p_token is null or p_token !~ '^[0-9a-f]{64}$' then
    raise exception 'a claim token is 64 lower-case hex digits' using errcode = '22023';
  end if;
  -- One registration at a time per user, so the cap holds under concurrency.
  perform pg_advisory_xact_lock(hashtext('helix cloud_hubs ' || v_uid::text));
  select token_hash into v_hash from helix_private.hub_tokens
   where user_id = v_uid and hub_id = p_hub_id;
  if found then
    if v_hash <> sha256(convert_to(p_token, 'UTF8')) then
      raise exception 'hub % is already registered with another claim token', p_hub_id
        using errcode = '42501';
    end if;
    return;
  end if;
  if (select count(*) from public.cloud_hubs where user_id = v_uid) >= 16 then
    raise exception 'this account already has 16 hubs registered' using errcode = '54000';
  end if;
  insert into public.cloud_hubs (user_id, hub_id) values (v_uid, p_hub_id);
  insert into helix_private.hub_tokens (user_id, hub_id, token_hash)
  values (v_uid, p_hub_id, sha256(convert_to(p_token, 'UTF8')));
end $$;

-- ------------------------------------------------------------------------------ presence
create table public.cloud_presence (
  user_id      uuid not null,
  hub_id       text not null,
  hub_name     text not null default '' check (octet_length(hub_name) <= 128),
  relay_url    text check (relay_url is null or octet_length(relay_url) <= 512),
  direct_addrs text[] not null default '{}'
               check (cardinality(direct_addrs) <= 32 and helix_private.texts_within(direct_addrs, 64)),
  providers    text[] not null default '{}'
               check (cardinality(providers) <= 16 and helix_private.texts_within(providers, 32)),
  version      text not null default '' check (octet_length(version) <= 64),
  last_seen    timestamptz not null default now(),
  primary key (user_id, hub_id),
  foreign key (user_id, hub_id) references public.cloud_hubs (user_id, hub_id) on delete cascade
);
create index cloud_presence_by_user on public.cloud_presence (user_id, last_seen desc);

alter table public.cloud_presence enable row level security;
revoke all on public.cloud_presence from public, anon, authenticated;
grant select on public.cloud_presence to authenticated;
grant all on public.cloud_presence to service_role;
create policy cloud_presence_select on public.cloud_presence for select to authenticated
  using (user_id = (select auth.uid()));

-- The hub says where it can be dialed; `last_seen` is the server's clock.
create function public.announce_cloud_hub(
  p_hub_id text, p_token text, p_hub_name text, p_relay_url text,
  p_direct_addrs text[], p_providers text[], p_version text)
returns void
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
begin
  insert into public.cloud_presence as p
    (user_id, hub_id, hub_name, relay_url, direct_addrs, providers, version, last_seen)
  values (v_uid, p_hub_id, coalesce(p_hub_name, ''), p_relay_url,
          coalesce(p_direct_addrs, '{}'), coalesce(p_providers, '{}'), coalesce(p_version, ''), now())
  on conflict (user_id, hub_id) do update
    set hub_name = excluded.hub_name, relay_url = excluded.relay_url,
        direct_addrs = excluded.direct_addrs, providers = excluded.providers,
        version = excluded.version, last_seen = now();
end $$;

-- The hub withdraws its presence (a graceful shutdown); whether there was a row.
create function public.withdraw_cloud_hub(p_hub_id text, p_token text) returns boolean
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
begin
  delete from public.cloud_presence where user_id = v_uid and hub_id = p_hub_id;
  return found;
end $$;

-- The caller's hubs seen within the last p_within_seconds by the server's clock, newest first.
create function public.online_cloud_hubs(p_within_seconds integer default 300)
returns setof public.cloud_presence
language sql stable security invoker set search_path = '' as $$
  select * from public.cloud_presence
   where last_seen > now() - make_interval(secs => greatest(p_within_seconds, 1))
   order by last_seen desc
$$;

-- ------------------------------------------------------------------------------ commands
create table public.cloud_commands (
  command_id       uuid primary key,
  user_id          uuid not null default auth.uid() references auth.users (id) on delete cascade,
  hub_id           text not null,
  source_device_id text not null check (source_device_id ~ '^[0-9a-f]{64}$'),
  origin           text not null default 'cloud' check (origin in ('cloud', 'hub')),
  envelope         text check (envelope is null or octet_length(envelope) <= 1489576),
  prompt           text check (prompt is null or octet_length(prompt) <= 1489576),
  status           text not null default 'pending'
                   check (status in ('pending', 'executing', 'completed', 'failed', 'cancelled', 'expired')),
  reason           text check (reason is null or octet_length(reason) <= 1024),
  created_at       timestamptz not null default now(),
  expires_at       timestamptz not null,
  claimed_at       timestamptz,
  finished_at      timestamptz,
  last_seq         integer not null default 0 check (last_seq between 0 and 65536),
  foreign key (user_id, hub_id) references public.cloud_hubs (user_id, hub_id) on delete cascade,
  check (expires_at > created_at and expires_at <= created_at + interval '24 hours'),
  check ((origin = 'cloud') = (envelope is not null))
);
create index cloud_commands_pending on public.cloud_commands (hub_id, created_at)
  where status = 'pending';
create index cloud_commands_by_user on public.cloud_commands (user_id, created_at desc);
create index cloud_commands_finished on public.cloud_commands (user_id, hub_id, finished_at)
  where finished_at is not null;

create table public.cloud_command_keys (
  command_id uuid not null references public.cloud_commands (command_id) on delete cascade,
  device_id  text not null check (device_id ~ '^[0-9a-f]{64}$'),
  user_id    uuid not null references auth.users (id) on delete cascade,
  envelope   text not null check (octet_length(envelope) <= 2048),
  primary key (command_id, device_id)
);

create table public.cloud_command_events (
  command_id uuid not null references public.cloud_commands (command_id) on delete cascade,
  seq        integer not null check (seq between 1 and 65536),
  user_id    uuid not null references auth.users (id) on delete cascade,
  envelope   text not null check (octet_length(envelope) <= 1489576),
  created_at timestamptz not null default now(),
  primary key (command_id, seq)
);

alter table public.cloud_commands enable row level security;
alter table public.cloud_command_keys enable row level security;
alter table public.cloud_command_events enable row level security;
revoke all on public.cloud_commands, public.cloud_command_keys, public.cloud_command_events
  from public, anon, authenticated;
grant select on public.cloud_commands, public.cloud_command_keys, public.cloud_command_events
  to authenticated;
grant insert (command_id, hub_id, source_device_id, envelope, expires_at)
  on public.cloud_commands to authenticated;
grant all on public.cloud_commands, public.cloud_command_keys, public.cloud_command_events
  to service_role;

create policy cloud_commands_select on public.cloud_commands for select to authenticated
  using (user_id = (select auth.uid()));
create policy cloud_commands_insert on public.cloud_commands for insert to authenticated
  with check (user_id = (select auth.uid()) and origin = 'cloud' and status = 'pending');
create policy cloud_command_keys_select on public.cloud_command_keys for select to authenticated
  using (user_id = (select auth.uid()));
create policy cloud_command_events_select on public.cloud_command_events for select to authenticated
  using (user_id = (select auth.uid()));

-- A device's insert: the server's clock, and at most 64 pending commands per user.
create function helix_private.cloud_command_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.created_at := now();
  -- One insert at a time per user, so the cap holds under concurrency (as for hubs).
  if new.status = 'pending' then
    perform pg_advisory_xact_lock(hashtext('helix cloud_commands ' || new.user_id::text));
  end if;
  if new.status = 'pending' and (select count(*) from public.cloud_commands
       where user_id = new.user_id and status = 'pending') >= 64 then
    raise exception 'this account already has 64 commands waiting for a hub'
      using errcode = '54000', hint = 'wait for the hub to take them, or cancel some';
  end if;
  return new;
end $$;
revoke execute on function helix_private.cloud_command_insert() from public;
create trigger cloud_command_insert before insert on public.cloud_commands
  for each row execute function helix_private.cloud_command_insert();

-- The hub's claim: first its pending commands past their expiry become `expired`, then up to
-- p_limit (1–100) of the others, oldest first, become `executing`. Concurrent claimers never
-- get the same command.
create function public.claim_cloud_commands(p_hub_id text, p_token text, p_limit integer default 8)
returns setof public.cloud_commands
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
begin
  update public.cloud_commands
     set status = 'expired', finished_at = now(), reason = 'expired before the hub claimed it'
   where user_id = v_uid and hub_id = p_hub_id and status = 'pending' and expires_at <= now();
  return query
    update public.cloud_commands c
       set status = 'executing', claimed_at = now()
     where c.command_id in (
       select command_id from public.cloud_commands
        where user_id = v_uid and hub_id = p_hub_id and status = 'pending' and expires_at > now()
        order by created_at
        limit least(greatest(p_limit, 1), 100)
        for update skip locked)
    returning c.*;
end $$;

-- The hub publishes a command it runs: its prompt (under the content key) and the content key
-- sealed to each device paired now (p_keys: a JSON array of at most 64
-- {"device": <key>, "envelope": <text>}). For a command a device sent through the cloud, the
-- row must be one this hub claimed; for one that reached the hub another way (iroh, the local
-- listener) the row is created here, `executing`, with `origin` `hub`. A retry with the same
-- prompt and keys changes nothing; different ones are refused (23505).
create function public.publish_cloud_command(
  p_hub_id text, p_token text, p_command_id uuid, p_source_device_id text,
  p_prompt text, p_keys jsonb, p_expires_at timestamptz default null)
returns public.cloud_commands
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
  v public.cloud_commands;
  v_key jsonb;
  v_stored text;
begin
  if p_prompt is null then
    raise exception 'command % needs its prompt', p_command_id using errcode = '22023';
  end if;
  if jsonb_typeof(p_keys) is distinct from 'array' then
    raise exception 'the keys of % must be a JSON array', p_command_id using errcode = '22023';
  end if;
  if jsonb_array_length(p_keys) > 64 then
    raise exception 'command % may carry at most 64 device keys', p_command_id
      using errcode = '54000';
  end if;
  select * into v from public.cloud_commands
   where command_id = p_command_id and user_id = v_uid and hub_id = p_hub_id
   for update;
  if not found then
    insert into public.cloud_commands
      (command_id, user_id, hub_id, source_device_id, origin, status, created_at, expires_at, claimed_at)
    values (p_command_id, v_uid, p_hub_id, p_source_device_id, 'hub', 'executing', now(),
            least(greatest(coalesce(p_expires_at, now() + interval '1 hour'), now() + interval '1 second'),
                  now() + interval '24 hours'),
            now())
    returning * into v;
  elsif v.origin = 'cloud' and v.claimed_at is null then
    raise exception 'command % is not claimed by this hub', p_command_id using errcode = 'P0002';
  end if;
  if v.prompt is null then
    update public.cloud_commands set prompt = p_prompt where command_id = p_command_id
    returning * into v;
  elsif v.prompt <> p_prompt then
    raise exception 'command % is already published with another prompt', p_command_id
      using errcode = '23505';
  end if;
  for v_key in select e from jsonb_array_elements(p_keys) as t(e) loop
    if (v_key ->> 'device') is null or (v_key ->> 'envelope') is null then
      raise exception 'a key of % needs a device and an envelope', p_command_id
        using errcode = '22023';
    end if;
    select envelope into v_stored from public.cloud_command_keys
     where command_id = p_command_id and device_id = v_key ->> 'device';
    if not found then
      insert into public.cloud_command_keys (command_id, device_id, user_id, envelope)
      values (p_command_id, v_key ->> 'device', v_uid, v_key ->> 'envelope');
    elsif v_stored <> v_key ->> 'envelope' then
      raise exception 'the key of % for device % is already stored with another envelope',
        p_command_id, left(v_key ->> 'device', 64) using errcode = '23505';
    end if;
  end loop;
  return v;
end $$;

-- Appends events in order: p_events is a JSON array of at most 64 {"seq": n, "envelope": "…"}
-- with consecutive seqs, at most 4 MiB of envelopes in all; at most 65536 per command. Events up
-- to last_seq must be the stored ones (a retry, else 23505); the rest must continue last_seq
-- without a gap. Returns the new last_seq.
create function public.append_cloud_events(p_hub_id text, p_token text, p_command_id uuid, p_events jsonb)
returns integer
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
  v_last integer;
  v_first integer;
  v_seq integer;
  v_envelope text;
  v_stored text;
  v_event jsonb;
  v_index bigint;
begin
  select last_seq into v_last from public.cloud_commands
   where command_id = p_command_id and user_id = v_uid and hub_id = p_hub_id
     and status = 'executing'
   for update;
  if not found then
    raise exception 'command % is not executing on this hub', p_command_id using errcode = 'P0002';
  end if;
  if jsonb_typeof(p_events) is distinct from 'array' then
    raise exception 'events of % must be a JSON array', p_command_id using errcode = '22023';
  end if;
  if jsonb_array_length(p_events) = 0 then
    return v_last;
  end if;
  if jsonb_array_length(p_events) > 64 then
    raise exception 'at most 64 events per call, not %', jsonb_array_length(p_events)
      using errcode = '54000';
  end if;
  if (select sum(octet_length(e ->> 'envelope')) from jsonb_array_elements(p_events) as t(e))
     > 4 * 1024 * 1024 then
    raise exception 'at most 4 MiB of events per call' using errcode = '54000';
  end if;
  v_first := (p_events -> 0 ->> 'seq')::integer;
  if v_first is null or v_first < 1 or v_first > v_last + 1 then
    raise exception 'events of % must continue at seq %, not %', p_command_id, v_last + 1,
      coalesce(v_first::text, 'none') using errcode = '22023';
  end if;
  if v_first + jsonb_array_length(p_events) - 1 > 65536 then
    raise exception 'command % may have at most 65536 events', p_command_id using errcode = '54000';
  end if;
  for v_event, v_index in select e, i from jsonb_array_elements(p_events) with ordinality as t(e, i)
  loop
    v_seq := (v_event ->> 'seq')::integer;
    if v_seq is distinct from v_first + v_index::integer - 1 then
      raise exception 'events of % are not numbered consecutively', p_command_id
        using errcode = '22023';
    end if;
    v_envelope := v_event ->> 'envelope';
    if v_envelope is null then
      raise exception 'event % of % has no envelope', v_seq, p_command_id using errcode = '22023';
    end if;
    if v_seq <= v_last then
      select envelope into v_stored from public.cloud_command_events
       where command_id = p_command_id and seq = v_seq;
      if v_stored is distinct from v_envelope then
        raise exception 'event % of command % is already stored with a different envelope',
          v_seq, p_command_id
          using errcode = '23505',
                hint = 'a retried batch must resend the envelopes it sent the first time';
      end if;
    else
      insert into public.cloud_command_events (command_id, seq, user_id, envelope)
      values (p_command_id, v_seq, v_uid, v_envelope);
    end if;
  end loop;
  if v_seq > v_last then
    update public.cloud_commands set last_seq = v_seq where command_id = p_command_id;
    v_last := v_seq;
  end if;
  return v_last;
end $$;

-- The hub ends a command: `completed`, `failed`, `cancelled` or `expired`, with a reason (cut
-- to 1024 bytes). The same status again returns the row unchanged; another is refused (55000).
create function public.complete_cloud_command(
  p_hub_id text, p_token text, p_command_id uuid, p_status text, p_reason text default null)
returns public.cloud_commands
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
  v public.cloud_commands;
begin
  if p_status is null or p_status not in ('completed', 'failed', 'cancelled', 'expired') then
    raise exception 'status must be completed, failed, cancelled or expired, not %',
      coalesce(left(p_status, 32), 'null') using errcode = '22023';
  end if;
  select * into v from public.cloud_commands
   where command_id = p_command_id and user_id = v_uid and hub_id = p_hub_id
   for update;
  if not found then
    raise exception 'no command % on this hub', p_command_id using errcode = 'P0002';
  end if;
  if v.status = p_status then
    return v;
  end if;
  if v.status not in ('pending', 'executing') then
    raise exception 'command % already ended %', p_command_id, v.status using errcode = '55000';
  end if;
  update public.cloud_commands
     set status = p_status, reason = helix_private.cut_bytes(p_reason, 1024), finished_at = now()
   where command_id = p_command_id
  returning * into v;
  return v;
end $$;

-- A device cancels one of its user's commands: a `pending` or `executing` one becomes
-- `cancelled` (the hub notices and stops it). Cancelling a cancelled command returns it
-- unchanged; one that ended otherwise is refused (55000).
create function public.cancel_cloud_command(p_command_id uuid, p_reason text default null)
returns public.cloud_commands
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
  v public.cloud_commands;
begin
  if v_uid is null then
    raise exception 'the cloud route needs a signed-in session' using errcode = '42501';
  end if;
  select * into v from public.cloud_commands
   where command_id = p_command_id and user_id = v_uid
   for update;
  if not found then
    raise exception 'no command % in the cloud', p_command_id using errcode = 'P0002';
  end if;
  if v.status = 'cancelled' then
    return v;
  end if;
  if v.status not in ('pending', 'executing') then
    raise exception 'command % already ended %', p_command_id, v.status using errcode = '55000';
  end if;
  update public.cloud_commands
     set status = 'cancelled', reason = helix_private.cut_bytes(p_reason, 1024), finished_at = now()
   where command_id = p_command_id
  returning * into v;
  return v;
end $$;

-- ------------------------------------------------------------------------------ pairing
create table public.cloud_pairings (
  pairing_id uuid primary key,
  user_id    uuid not null default auth.uid() references auth.users (id) on delete cascade,
  hub_id     text not null,
  device_id  text not null check (device_id ~ '^[0-9a-f]{64}$'),
  request    text not null check (octet_length(request) <= 8192),
  answer     text check (answer is null or octet_length(answer) <= 8192),
  status     text not null default 'pending' check (status in ('pending', 'answered')),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  answered_at timestamptz,
  foreign key (user_id, hub_id) references public.cloud_hubs (user_id, hub_id) on delete cascade,
  check (expires_at > created_at and expires_at <= created_at + interval '10 minutes')
);
create index cloud_pairings_pending on public.cloud_pairings (hub_id, created_at)
  where status = 'pending';

alter table public.cloud_pairings enable row level security;
revoke all on public.cloud_pairings from public, anon, authenticated;
grant select on public.cloud_pairings to authenticated;
grant insert (pairing_id, hub_id, device_id, request, expires_at) on public.cloud_pairings
  to authenticated;
grant all on public.cloud_pairings to service_role;
create policy cloud_pairings_select on public.cloud_pairings for select to authenticated
  using (user_id = (select auth.uid()));
create policy cloud_pairings_insert on public.cloud_pairings for insert to authenticated
  with check (user_id = (select auth.uid()) and status = 'pending');

-- A device's pairing request: the server's clock, and at most 8 waiting per user.
create function helix_private.cloud_pairing_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.created_at := now();
  -- One insert at a time per user, so the cap holds under concurrency (as for hubs).
  perform pg_advisory_xact_lock(hashtext('helix cloud_pairings ' || new.user_id::text));
  if (select count(*) from public.cloud_pairings
       where user_id = new.user_id and status = 'pending' and expires_at > now()) >= 8 then
    raise exception 'this account already has 8 pairing requests waiting' using errcode = '54000';
  end if;
  return new;
end $$;
revoke execute on function helix_private.cloud_pairing_insert() from public;
create trigger cloud_pairing_insert before insert on public.cloud_pairings
  for each row execute function helix_private.cloud_pairing_insert();

-- The hub's unexpired, unanswered pairing requests, oldest first (at most 16).
create function public.pending_cloud_pairings(p_hub_id text, p_token text)
returns setof public.cloud_pairings
language plpgsql stable security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
begin
  return query
    select * from public.cloud_pairings
     where user_id = v_uid and hub_id = p_hub_id and status = 'pending' and expires_at > now()
     order by created_at limit 16;
end $$;

-- The hub answers a pairing request with its signed answer (accepted or refused, inside).
-- Answering again with the same answer changes nothing; another is refused (23505).
create function public.answer_cloud_pairing(p_hub_id text, p_token text, p_pairing_id uuid, p_answer text)
returns public.cloud_pairings
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
  v public.cloud_pairings;
begin
  if p_answer is null then
    raise exception 'pairing % needs an answer', p_pairing_id using errcode = '22023';
  end if;
  select * into v from public.cloud_pairings
   where pairing_id = p_pairing_id and user_id = v_uid and hub_id = p_hub_id
   for update;
  if not found then
    raise exception 'no pairing request % for this hub', p_pairing_id using errcode = 'P0002';
  end if;
  if v.status = 'answered' then
    if v.answer = p_answer then
      return v;
    end if;
    raise exception 'pairing % is already answered', p_pairing_id using errcode = '23505';
  end if;
  update public.cloud_pairings
     set status = 'answered', answer = p_answer, answered_at = now()
   where pairing_id = p_pairing_id
  returning * into v;
  return v;
end $$;

-- ----------------------------------------------------------------------------- retention
-- Deletes this hub's commands that ended more than p_retention_days (1–3650) ago, with their
-- keys and events, at most 10,000 per call, and its pairing requests older than a day.
-- Returns how many commands it deleted (call again while it returns 10,000).
create function public.prune_cloud(p_hub_id text, p_token text, p_retention_days integer default 30)
returns integer
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := helix_private.hub_caller(p_hub_id, p_token);
  v_count integer;
begin
  if p_retention_days is null or p_retention_days < 1 or p_retention_days > 3650 then
    raise exception 'the retention is 1 to 3650 days, not %', coalesce(p_retention_days::text, 'null')
      using errcode = '22023';
  end if;
  delete from public.cloud_commands
   where command_id in (
     select command_id from public.cloud_commands
      where user_id = v_uid and hub_id = p_hub_id and finished_at is not null
        and status not in ('pending', 'executing')
        and finished_at < now() - make_interval(days => p_retention_days)
      limit 10000);
  get diagnostics v_count = row_count;
  delete from public.cloud_pairings
   where user_id = v_uid and hub_id = p_hub_id and created_at < now() - interval '1 day';
  return v_count;
end $$;

-- ------------------------------------------------------------------------------- grants
revoke execute on function public.register_cloud_hub(text, text),
  public.announce_cloud_hub(text, text, text, text, text[], text[], text),
  public.withdraw_cloud_hub(text, text),
  public.online_cloud_hubs(integer),
  public.claim_cloud_commands(text, text, integer),
  public.publish_cloud_command(text, text, uuid, text, text, jsonb, timestamptz),
  public.append_cloud_events(text, text, uuid, jsonb),
  public.complete_cloud_command(text, text, uuid, text, text),
  public.cancel_cloud_command(uuid, text),
  public.pending_cloud_pairings(text, text),
  public.answer_cloud_pairing(text, text, uuid, text),
  public.prune_cloud(text, text, integer)
  from public, anon;
grant execute on function public.register_cloud_hub(text, text),
  public.announce_cloud_hub(text, text, text, text, text[], text[], text),
  public.withdraw_cloud_hub(text, text),
  public.online_cloud_hubs(integer),
  public.claim_cloud_commands(text, text, integer),
  public.publish_cloud_command(text, text, uuid, text, text, jsonb, timestamptz),
  public.append_cloud_events(text, text, uuid, jsonb),
  public.complete_cloud_command(text, text, uuid, text, text),
  public.cancel_cloud_command(uuid, text),
  public.pending_cloud_pairings(text, text),
  public.answer_cloud_pairing(text, text, uuid, text),
  public.prune_cloud(text, text, integer)
  to authenticated, service_role;

-- Realtime: a new command or pairing request wakes its hub (a subscription filtered on its
-- hub_id); a command row's updates (last_seq, status) wake the devices following it.
alter publication supabase_realtime add table public.cloud_commands, public.cloud_pairings;
