-- Helix Mesh: the table relay's server-managed state changes only through its functions, and a
-- re-sent event must match the stored one.
--
-- Until now the claim / append / complete functions ran with the caller's rights, so users
-- (`authenticated`) held UPDATE on `remote_commands`' status, claimed_at, finished_at, reason
-- and last_seq, and INSERT on `remote_command_events`: anyone signed in could move their own
-- commands' status or last_seq, or write events, directly, without the functions' checks.
-- Now the functions are SECURITY DEFINER (they run as their owner, the migration's role, so
-- row-level security no longer applies inside them) and check ownership themselves: a user
-- reaches only rows whose user_id is auth.uid(); service_role reaches every row, as its
-- BYPASSRLS did before. Users keep SELECT and INSERT on commands and SELECT on events; no
-- column of either table is updatable by them (a command has no user-editable column: a
-- cancel from a spoke also goes through complete_remote_command).
--
-- append_remote_command_events accepted a retried batch (seqs already stored) without
-- comparing it. Now an event whose seq is already stored is accepted only if its envelope is
-- byte-for-byte the stored one; otherwise the call fails with SQLSTATE 23505
-- (unique_violation, HTTP 409 through PostgREST) and the message
-- `event <seq> of command <id> is already stored with a different envelope`. A retry must
-- therefore resend the envelopes it sealed the first time, not re-seal the events.

-- ------------------------------------------------------------------ direct writes revoked
-- Revoking the table-level privilege also revokes the column-level grants of the earlier
-- migration; the column list is spelled out anyway so the intent reads here.
revoke update (status, claimed_at, finished_at, reason, last_seq) on public.remote_commands
  from authenticated;
revoke update on public.remote_commands from authenticated;
drop policy remote_commands_update on public.remote_commands;
revoke insert on public.remote_command_events from authenticated;
drop policy remote_command_events_insert on public.remote_command_events;

-- ------------------------------------------------------------------------------ functions
-- Each function's EXECUTE grants (authenticated and service_role, not anon) are kept by
-- CREATE OR REPLACE.

-- Atomic claim for a hub: its oldest pending commands, each claimed exactly once however many
-- hubs or workers ask at the same time. Commands past their expiry are marked expired instead.
create or replace function public.claim_remote_commands(p_hub_id text, p_limit integer default 8)
returns setof public.remote_commands
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
  v_service boolean := coalesce(auth.role() = 'service_role', false);
begin
  update public.remote_commands
     set status = 'expired', finished_at = now(), reason = 'expired before the hub claimed it'
   where target_hub_id = p_hub_id and status = 'pending' and expires_at <= now()
     and (user_id = v_uid or v_service);
  return query
    update public.remote_commands c
       set status = 'executing', claimed_at = now()
     where c.command_id in (
       select command_id from public.remote_commands
        where target_hub_id = p_hub_id and status = 'pending' and expires_at > now()
          and (user_id = v_uid or v_service)
        order by created_at
        limit least(greatest(p_limit, 1), 100)
        for update skip locked)
    returning c.*;
end $$;

-- Appends events in order. p_events is a JSON array of {"seq": n, "envelope": "..."} with
-- consecutive seqs. Events up to the command's last_seq must be the stored ones (a retry);
-- the rest must continue last_seq without a gap and are stored. Returns the new last_seq.
create or replace function public.append_remote_command_events(p_command_id uuid, p_events jsonb)
returns integer
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
  v_service boolean := coalesce(auth.role() = 'service_role', false);
  v_last integer;
  v_user uuid;
  v_first integer;
  v_seq integer;
  v_envelope text;
  v_stored text;
  v_event jsonb;
  v_index bigint;
begin
  select last_seq, user_id into v_last, v_user from public.remote_commands
   where command_id = p_command_id and status = 'executing'
     and (user_id = v_uid or v_service)
   for update;
  if not found then
    raise exception 'command % is not executing (or not yours)', p_command_id
      using errcode = 'P0002';
  end if;
  if jsonb_typeof(p_events) is distinct from 'array' then
    raise exception 'events of % must be a JSON array', p_command_id using errcode = '22023';
  end if;
  if jsonb_array_length(p_events) = 0 then
    return v_last;
  end if;
  v_first := (p_events -> 0 ->> 'seq')::integer;
  if v_first is null or v_first < 1 or v_first > v_last + 1 then
    raise exception 'events of % must continue at seq %, not %', p_command_id, v_last + 1,
      coalesce(v_first::text, 'none') using errcode = '22023';
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
      select envelope into v_stored from public.remote_command_events
       where command_id = p_command_id and seq = v_seq;
      if v_stored is distinct from v_envelope then
        raise exception 'event % of command % is already stored with a different envelope',
          v_seq, p_command_id
          using errcode = '23505',
                hint = 'a retried batch must resend the envelopes it sent the first time';
      end if;
    else
      insert into public.remote_command_events (command_id, seq, user_id, envelope)
      values (p_command_id, v_seq, v_user, v_envelope);
    end if;
  end loop;
  if v_seq > v_last then
    update public.remote_commands set last_seq = v_seq where command_id = p_command_id;
    v_last := v_seq;
  end if;
  return v_last;
end $$;

-- Ends a command. Idempotent: completing a command that already ended with the same status
-- changes nothing; a different final status is refused.
create or replace function public.complete_remote_command(p_command_id uuid, p_status text, p_reason text default null)
returns public.remote_commands
language plpgsql volatile security definer set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
  v_service boolean := coalesce(auth.role() = 'service_role', false);
  v public.remote_commands;
begin
  if p_status not in ('completed', 'failed', 'cancelled', 'expired') then
    raise exception 'status must be completed, failed, cancelled or expired, not %', p_status
      using errcode = '22023';
  end if;
  select * into v from public.remote_commands
   where command_id = p_command_id and (user_id = v_uid or v_service)
   for update;
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
