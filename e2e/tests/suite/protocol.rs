//! The gRPC surface: validation errors, the bearer token, health, reflection, listing.

use helix_mesh::pb::{self, CommandStatus};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::support::{
    TestHub, collect, config_for,
    mock_anthropic::{MockAnthropic, Reply},
    request,
};

#[tokio::test]
async fn bad_requests_get_invalid_argument_naming_the_field() {
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let cases = [
        (
            pb::ExecuteRequest {
                content: String::new(),
                ..request("")
            },
            "content: must not be empty",
        ),
        (
            pb::ExecuteRequest {
                provider: 17,
                ..request("hi")
            },
            "provider: unknown value 17",
        ),
        (
            pb::ExecuteRequest {
                content: "x".repeat(helix_mesh::MAX_CONTENT_BYTES + 1),
                ..request("")
            },
            "content: is 1048577 bytes, more than the limit",
        ),
        (
            pb::ExecuteRequest {
                command_id: "12345".into(),
                ..request("hi")
            },
            "command_id: \"12345\" is not a UUID",
        ),
    ];
    for (req, expected) in cases {
        let err = client.execute(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().starts_with(expected),
            "{:?} vs {expected:?}",
            err.message()
        );
    }
    for err in [
        client
            .attach(pb::AttachRequest {
                command_id: "nope".into(),
                after_seq: 0,
            })
            .await
            .unwrap_err(),
        client
            .cancel(pb::CancelRequest {
                command_id: "nope".into(),
            })
            .await
            .unwrap_err(),
        client
            .get_command(pb::GetCommandRequest {
                command_id: "nope".into(),
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with("command_id:"),
            "{}",
            err.message()
        );
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = client
        .attach(pb::AttachRequest {
            command_id: unknown.clone(),
            after_seq: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&unknown));
    let err = client
        .list_commands(pb::ListCommandsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(mock.requests(), 0, "nothing invalid reached the provider");
    hub.shutdown().await;
}

#[tokio::test]
async fn remote_execution_needs_the_token_but_health_and_reflection_do_not() {
    let mock = MockAnthropic::start(Reply::text(&["x"])).await;
    let hub = TestHub::start(config_for(&mock)).await;

    let mut anonymous = hub.anonymous_client().await;
    let err = anonymous
        .get_hub_info(pb::GetHubInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("hub-token"), "{}", err.message());

    let mut wrong = tonic::Request::new(request("hi"));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-the-token".parse().unwrap());
    let err = anonymous.execute(wrong).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(mock.requests(), 0);

    // Health: open, and says the service is serving.
    let mut health = tonic_health::pb::health_client::HealthClient::new(hub.channel().await);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: helix_mesh::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Reflection (what `grpcurl -plaintext ADDR list` uses), v1 and v1alpha.
    use tonic_reflection::pb::{v1, v1alpha};
    let mut v1_client =
        v1::server_reflection_client::ServerReflectionClient::new(hub.channel().await);
    let mut replies = v1_client
        .server_reflection_info(tokio_stream::iter([v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        }]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&helix_mesh::SERVICE_NAME), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(hub.channel().await);
    let mut replies = alpha
        .server_reflection_info(tokio_stream::iter([v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    helix_mesh::SERVICE_NAME.into(),
                ),
            ),
        }]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    assert!(matches!(
        reply.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
    hub.shutdown().await;
}

#[tokio::test]
async fn list_pages_newest_first_with_filters() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    mock.script([Reply::status(400)]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = request(&format!("prompt {i}"));
        req.session_id = if i % 2 == 0 {
            "even".into()
        } else {
            "odd".into()
        };
        ids.push(req.command_id.clone());
        collect(client.execute(req).await.unwrap().into_inner()).await;
    }
    // Newest first, two per page.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_commands(pb::ListCommandsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.commands.len() <= 2);
        listed.extend(page.commands.iter().map(|c| c.command_id.clone()));
        assert!(
            page.commands
                .iter()
                .all(|c| c.result.as_ref().unwrap().output.is_empty()),
            "no output in listings"
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    let failed = client
        .list_commands(pb::ListCommandsRequest {
            status: CommandStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        failed
            .commands
            .iter()
            .map(|c| c.command_id.clone())
            .collect::<Vec<_>>(),
        [ids[0].clone()]
    );
    let odd = client
        .list_commands(pb::ListCommandsRequest {
            session_id: "odd".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        odd.commands
            .iter()
            .map(|c| c.command_id.clone())
            .collect::<Vec<_>>(),
        [ids[3].clone(), ids[1].clone()]
    );
    let got = client
        .get_command(pb::GetCommandRequest {
            command_id: ids[4].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.result.unwrap().output, "ok");
    assert_eq!(got.session_id, "even");
    assert_eq!(got.source_device_id, "test-device");
    hub.shutdown().await;
}
