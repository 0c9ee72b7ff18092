-- Helix Mesh: hub presence and the end-to-end-encrypted table relay.
--
-- Runs as the table owner (on Supabase: `supabase db push`, i.e. the postgres role), once, in
-- order with the other migrations. Grants are explicit: nothing relies on default privileges.
-- Supabase never sees a prompt or an output: commands and events travel as opaque envelopes
-- (encrypted to the recipient and signed by the sender: JSON with base64url fields, see
-- helix_mesh::envelope); only routing metadata
-- (ids, status, times, target hub, a refusal reason) is in clear.

-- ------------------------------------------------------------------------------ presence
create table public.hub_presence (
  hub_id       text primary key
               check (hub_id ~ '^[0-9a-f]{64}$'),          -- the hub's iroh endpoint id (hex)
  user_id      uuid not null default auth.uid() references auth.users (id) on delete cascade,
  hub_name     text not null default '' check (length(hub_name) <= 128),
  relay_url    text check (relay_url is null or length(relay_url) <= 512),
  direct_addrs text[] not null default '{}' check (cardinality(direct_addrs) <= 32),
  providers    text[] not null default '{}' check (cardinality(providers) <= 16),
  version      text not null default '' check (length(version) <= 64),
  last_seen    timestamptz not null default now(),         -- set by the server, see trigger
  created_at   timestamptz not null default now()
);
create index hub_presence_by_user on public.hub_presence (user_id, last_seen desc);

alter table public.hub_presence enable row level security;
revoke all on public.hub_presence from public, anon, authenticated;
grant select, insert, update, delete on public.hub_presence to authenticated;
grant all on public.hub_presence to service_role;

-- A user sees and writes only their own hubs' rows; a row that belongs to someone else cannot
-- be taken over (update/upsert is refused by the USING clause, and user_id cannot be changed).
create policy hub_presence_select on public.hub_presence for select to authenticated
  using (user_id = (select auth.uid()));
create policy hub_presence_insert on public.hub_presence for insert to authenticated
  with check (user_id = (select auth.uid()));
create policy hub_presence_update on public.hub_presence for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy hub_presence_delete on public.hub_presence for delete to authenticated
  using (user_id = (select auth.uid()));

-- Heartbeats use the server's clock; a client-sent last_seen is ignored.
create function public.hub_presence_touch() returns trigger
language plpgsql set search_path = '' as $$
begin
  new.last_seen := now();
  if tg_op = 'UPDATE' then
    new.created_at := old.created_at;
    new.user_id := old.user_id;
  end if;
  return new;
end $$;
revoke execute on function public.hub_presence_touch() from public, anon, authenticated;
create trigger hub_presence_touch before insert or update on public.hub_presence
  for each row execute function public.hub_presence_touch();

-- The caller's hubs seen within the last p_within_seconds, by the server's clock (a spoke's
-- clock may be off; "online" means seen in the last 90 s).
create function public.online_hubs(p_within_seconds integer default 90)
returns setof public.hub_presence
language sql stable security invoker set search_path = '' as $$
  select * from public.hub_presence
   where last_seen > now() - make_interval(secs => greatest(p_within_seconds, 1))
   order by last_seen desc
$$;
revoke execute on function public.online_hubs(integer) from public, anon;
grant execute on function public.online_hubs(integer) to authenticated, service_role;

-- ------------------------------------------------------------------------ the table relay
create table public.remote_commands (
  command_id       uuid primary key,                       -- chosen by the spoke (idempotency key)
  user_id          uuid not null default auth.uid() references auth.users (id) on delete cascade,
  source_device_id text not null check (source_device_id ~ '^[0-9a-f]{64}$'),
  target_hub_id    text not null check (target_hub_id ~ '^[0-9a-f]{64}$'),
  envelope         text not null check (length(envelope) <= 2 * 1024 * 1024),
  status           text not null default 'pending'
                   check (status in ('pending', 'executing', 'completed', 'failed', 'cancelled', 'expired')),
  reason           text check (reason is null or length(reason) <= 1024),   -- never prompt or output
  created_at       timestamptz not null default now(),
  expires_at       timestamptz not null,
  claimed_at       timestamptz,
  finished_at      timestamptz,
  last_seq         integer not null default 0,
  check (expires_at > created_at)
);
-- The hub's claim query: its pending commands, oldest first.
create index remote_commands_pending on public.remote_commands (target_hub_id, created_at)
  where status = 'pending';
create index remote_commands_by_user on public.remote_commands (user_id, created_at desc);

create table public.remote_command_events (
  command_id  uuid not null references public.remote_commands (command_id) on delete cascade,
  seq         integer not null check (seq > 0),
  user_id     uuid not null default auth.uid() references auth.users (id) on delete cascade,
  envelope    text not null check (length(envelope) <= 2 * 1024 * 1024),
  created_at  timestamptz not null default now(),
  primary key (command_id, seq)
);

alter table public.remote_commands enable row level security;
alter table public.remote_command_events enable row level security;
revoke all on public.remote_commands, public.remote_command_events from public, anon, authenticated;
-- Spokes insert and read; everything else goes through the functions below.
grant select, insert on public.remote_commands to authenticated;
grant select on public.remote_command_events to authenticated;
grant all on public.remote_commands, public.remote_command_events to service_role;

create policy remote_commands_select on public.remote_commands for select to authenticated
  using (user_id = (select auth.uid()));
create policy remote_commands_insert on public.remote_commands for insert to authenticated
  with check (user_id = (select auth.uid()) and status = 'pending' and last_seq = 0
              and claimed_at is null and finished_at is null and reason is null);
create policy remote_command_events_select on public.remote_command_events for select to authenticated
  using (user_id = (select auth.uid()));

-- Atomic claim for a hub: its oldest pending commands, each claimed exactly once however many
-- hubs or workers ask at the same time. Commands past their expiry are marked expired instead.
-- SECURITY INVOKER: row level security applies, so a user can only claim their own commands.
create function public.claim_remote_commands(p_hub_id text, p_limit integer default 8)
returns setof public.remote_commands
language plpgsql volatile security invoker set search_path = '' as $$
begin
  update public.remote_commands
     set status = 'expired', finished_at = now(), reason = 'expired before the hub claimed it'
   where target_hub_id = p_hub_id and status = 'pending' and expires_at <= now();
  return query
    update public.remote_commands c
       set status = 'executing', claimed_at = now()
     where c.command_id in (
       select command_id from public.remote_commands
        where target_hub_id = p_hub_id and status = 'pending' and expires_at > now()
        order by created_at
        limit least(greatest(p_limit, 1), 100)
        for update skip locked)
    returning c.*;
end $$;

-- Appends events in order. p_events is a JSON array of {"seq": n, "envelope": "..."}; the seqs
-- must continue the command's last_seq without gaps. A retried batch whose events are already
-- stored (same seqs) is accepted without duplicating anything.
create function public.append_remote_command_events(p_command_id uuid, p_events jsonb)
returns integer
language plpgsql volatile security invoker set search_path = '' as $$
declare
  v_last integer;
  v_first integer;
  v_count integer;
  v_user uuid;
begin
  select last_seq, user_id into v_last, v_user from public.remote_commands
   where command_id = p_command_id and status = 'executing'
   for update;
  if not found then
    raise exception 'command % is not executing (or not yours)', p_command_id
      using errcode = 'P0002';
  end if;
  v_count := jsonb_array_length(p_events);
  if v_count = 0 then
    return v_last;
  end if;
  v_first := (p_events -> 0 ->> 'seq')::integer;
  if v_first + v_count - 1 <= v_last then
    return v_last;                                          -- a retry of a stored batch
  end if;
  if v_first <> v_last + 1 then
    raise exception 'events of % must continue at seq %, not %', p_command_id, v_last + 1, v_first
      using errcode = '22023';
  end if;
  insert into public.remote_command_events (command_id, seq, user_id, envelope)
  select p_command_id, (e ->> 'seq')::integer, v_user, e ->> 'envelope'
    from jsonb_array_elements(p_events) with ordinality as t(e, i)
   where (e ->> 'seq')::integer = v_first + i::integer - 1;
  get diagnostics v_count = row_count;
  if v_count <> jsonb_array_length(p_events) then
    raise exception 'events of % are not numbered consecutively', p_command_id using errcode = '22023';
  end if;
  update public.remote_commands set last_seq = v_first + v_count - 1
   where command_id = p_command_id;
  return v_first + v_count - 1;
end $$;

-- Ends a command. Idempotent: completing a command that already ended with the same status
-- changes nothing; a different final status is refused.
create function public.complete_remote_command(p_command_id uuid, p_status text, p_reason text default null)
returns public.remote_commands
language plpgsql volatile security invoker set search_path = '' as $$
declare
  v public.remote_commands;
begin
  if p_status not in ('completed', 'failed', 'cancelled', 'expired') then
    raise exception 'status must be completed, failed, cancelled or expired, not %', p_status
      using errcode = '22023';
  end if;
  select * into v from public.remote_commands where command_id = p_command_id for update;
  if not found then
    raise exception 'no command % (or not yours)', p_command_id using errcode = 'P0002';
  end if;
  if v.status = p_status then
    return v;
  end if;
  if v.status not in ('pending', 'executing') then
    raise exception 'command % already ended %', p_command_id, v.status using errcode = '55000';
  end if;
  update public.remote_commands
     set status = p_status, reason = left(p_reason, 1024), finished_at = now()
   where command_id = p_command_id
  returning * into v;
  return v;
end $$;

revoke execute on function public.claim_remote_commands(text, integer) from public, anon;
revoke execute on function public.append_remote_command_events(uuid, jsonb) from public, anon;
revoke execute on function public.complete_remote_command(uuid, text, text) from public, anon;
grant execute on function public.claim_remote_commands(text, integer) to authenticated, service_role;
grant execute on function public.append_remote_command_events(uuid, jsonb) to authenticated, service_role;
grant execute on function public.complete_remote_command(uuid, text, text) to authenticated, service_role;

-- The functions update rows the tables' policies must let their (RLS-bound) callers update.
grant update (status, claimed_at, finished_at, reason, last_seq) on public.remote_commands to authenticated;
create policy remote_commands_update on public.remote_commands for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
grant insert on public.remote_command_events to authenticated;
create policy remote_command_events_insert on public.remote_command_events for insert to authenticated
  with check (user_id = (select auth.uid())
              and exists (select 1 from public.remote_commands c
                           where c.command_id = remote_command_events.command_id
                             and c.user_id = (select auth.uid()) and c.status = 'executing'));

-- Realtime: command inserts wake the hub (its subscription asks for INSERTs on its own
-- target_hub_id only). Events and presence are not published (every heartbeat would be one
-- billed message per subscriber); spokes read events by seq cursor.
alter publication supabase_realtime add table public.remote_commands;
