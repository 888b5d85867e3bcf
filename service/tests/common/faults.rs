//! Members that misbehave after approving, for the ROAST tests and the
//! load bench.

use std::time::Duration;

use kura_service::api::{EventName, RoleName};
use kura_service::client::Client;
use wallet_core::frost_core::round2::SignatureShare;
use wallet_core::{format, Signed, Signer, WithdrawalPackages, WithdrawalRequest};

use super::now;

/// How a faulty member misbehaves once it has approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Never answers a session.
    Silent,
    /// Answers with shares that do not verify (its real shares, altered,
    /// in a document it signs itself) and a valid next approval.
    Cheats,
}

/// A faulty member: approves every withdrawal after `delay`, then
/// misbehaves as `fault` says.
pub async fn faulty_member(
    url: String,
    pin: kura_service::CertFingerprint,
    mut signer: Signer,
    fault: Fault,
    delay: Duration,
) {
    let group = *signer.group().id();
    let client = Client::new(
        &url,
        pin,
        group,
        RoleName::Signer,
        signer.keystore().clone(),
    )
    .unwrap();
    let me = signer.keystore().identity_public_key().unwrap();
    let mut cursor = 0;
    loop {
        let Ok(page) = client.work(cursor, Duration::from_secs(5)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        cursor = page.next;
        for item in page.items {
            let id = item.withdrawal;
            let Ok(docs) = client.documents(&id).await else {
                continue;
            };
            let request: Signed<WithdrawalRequest> =
                format::decode_for_group(docs.request.get().as_bytes(), &group).unwrap();
            match item.kind {
                EventName::Submitted => {
                    tokio::time::sleep(delay).await;
                    let approval = signer.approve(&request, now()).unwrap();
                    client
                        .approve(&id, format::encode(&group, &approval).unwrap())
                        .await
                        .unwrap();
                }
                EventName::Packages if fault == Fault::Cheats => {
                    let pending = docs
                        .status
                        .sessions
                        .iter()
                        .rev()
                        .find(|s| s.members.contains(&me) && !s.answered.contains(&me));
                    let Some(session) = pending.map(|s| s.session) else {
                        continue;
                    };
                    let packages = docs.sessions.iter().find(|s| s.session == session).unwrap();
                    let packages: WithdrawalPackages =
                        format::decode_for_group(packages.packages.get().as_bytes(), &group)
                            .unwrap();
                    let answer = signer.sign_session(&request, &packages, now()).unwrap();
                    let mut body = answer.shares.body.clone();
                    for share in &mut body.shares {
                        let mut bytes = share.serialize();
                        let last = bytes.len() - 1;
                        bytes[last] ^= 1;
                        *share = SignatureShare::deserialize(&bytes).unwrap();
                    }
                    let forged = Signed::sign(&group, body, &**signer.keystore()).unwrap();
                    let posted = client
                        .shares(
                            &id,
                            session,
                            format::encode(&group, &forged).unwrap(),
                            Some(format::encode(&group, &*answer.next).unwrap()),
                        )
                        .await;
                    let e = posted.unwrap_err();
                    assert_eq!(e.status(), Some(403), "{e}");
                }
                _ => {}
            }
        }
    }
}
