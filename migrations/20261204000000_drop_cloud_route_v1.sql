-- Helix Mesh: the cloud route v1 is gone. The hub and the spoke use only the v2 objects of
-- 20261203000000_cloud_route_v2.sql (nothing was deployed with v1, so no data moves over).
-- Dropping the tables drops their policies, grants and triggers with them.

alter publication supabase_realtime drop table public.remote_commands;

drop function public.claim_remote_commands(text, integer);
drop function public.append_remote_command_events(uuid, jsonb);
drop function public.complete_remote_command(uuid, text, text);
drop function public.online_hubs(integer);

drop table public.remote_command_events;
drop table public.remote_commands;
drop table public.hub_presence;
drop function public.hub_presence_touch();
