//! The Rust `oci-client` crate (the ORAS project's client) as a real client:
//! push an image in chunked and monolithic mode, pull it back, list tags.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use registry_tests::oci::sha256;
use registry_tests::TestNode;

fn client(monolithic: bool) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        ..Default::default()
    })
}

#[tokio::test]
async fn oci_client_pushes_pulls_and_lists_tags() {
    let node = TestNode::start();
    let layers = vec![
        ImageLayer::oci_v1(
            (0..700_000u32).map(|i| (i % 241) as u8).collect::<Vec<_>>(),
            None,
        ),
        ImageLayer::new(
            vec![9u8; 5_000],
            IMAGE_LAYER_GZIP_MEDIA_TYPE.to_owned(),
            None,
        ),
    ];
    let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    // Under TEST_AUTH the crate logs in with Basic credentials, as it does
    // against distribution with htpasswd.
    let auth = match registry_tests::credentials_under_test() {
        Some((user, password)) => RegistryAuth::Basic(user, password),
        None => RegistryAuth::Anonymous,
    };

    for (tag, monolithic) in [("chunked", false), ("monolithic", true)] {
        let reference: Reference = format!("{}/rust/oci-client:{tag}", node.host())
            .parse()
            .unwrap();
        let pushed = client(monolithic)
            .push(&reference, &layers, config.clone(), &auth, None)
            .await
            .expect("push");
        assert!(pushed
            .manifest_url
            .contains("/v2/rust/oci-client/manifests/"));

        let image = client(false)
            .pull(
                &reference,
                &auth,
                vec![IMAGE_LAYER_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE],
            )
            .await
            .expect("pull");
        // oci-client downloads layers concurrently and returns them in completion order.
        let mut pulled: Vec<String> = image.layers.iter().map(|l| sha256(&l.data)).collect();
        let mut pushed: Vec<String> = layers.iter().map(ImageLayer::sha256_digest).collect();
        pulled.sort();
        pushed.sort();
        assert_eq!(pulled, pushed, "every layer comes back byte for byte");
        assert!(
            image.config.data == config.data,
            "the config comes back unchanged"
        );
    }

    let reference: Reference = format!("{}/rust/oci-client:any", node.host())
        .parse()
        .unwrap();
    let tags = client(false)
        .list_tags(&reference, &auth, None, None)
        .await
        .expect("tags");
    assert_eq!(tags.tags, vec!["chunked", "monolithic"]);
    let page = client(false)
        .list_tags(&reference, &auth, Some(1), Some("chunked"))
        .await
        .expect("page");
    assert_eq!(page.tags, vec!["monolithic"]);
}
