use super::*;

fn registry() -> AccessControl {
    let a = AccessControl::load(None);
    a.create_default_user("guest", "guest", "/").unwrap();
    a
}

#[test]
fn default_user_is_an_administrator_with_every_permission_on_the_default_vhost() {
    let a = registry();
    let guest = a.authenticate("guest", "guest", true).unwrap();
    assert_eq!(guest.tags, vec!["administrator".to_string()]);
    assert!(a
        .check("guest", "/", Perm::Configure, ResourceKind::Queue, "q")
        .is_ok());
    // Only the first start creates it.
    a.delete_user("guest").unwrap();
    a.add_user("other", Some("x")).unwrap();
    a.create_default_user("guest", "guest", "/").unwrap();
    assert!(a.user("guest").is_none());
}

#[test]
fn logins_fail_for_each_reason() {
    let a = registry();
    a.add_user("alice", Some("pw")).unwrap();
    assert!(a.authenticate("alice", "pw", false).is_ok());
    assert_eq!(
        a.authenticate("alice", "nope", true).unwrap_err(),
        LoginFailure::WrongPassword
    );
    assert_eq!(
        a.authenticate("bob", "pw", true).unwrap_err(),
        LoginFailure::NoSuchUser
    );
    assert_eq!(
        a.authenticate("guest", "guest", false).unwrap_err(),
        LoginFailure::LoopbackOnly
    );
    a.clear_password("alice").unwrap();
    assert_eq!(
        a.authenticate("alice", "pw", true).unwrap_err(),
        LoginFailure::NoPassword
    );
    a.change_password("alice", "new").unwrap();
    assert!(a.authenticate("alice", "new", true).is_ok());
}

#[test]
fn permissions_are_per_user_and_vhost_and_go_with_the_user() {
    let a = registry();
    a.add_user("alice", Some("pw")).unwrap();
    assert_eq!(
        a.add_user("alice", None),
        Err(AccessError::UserExists("alice".into()))
    );
    a.set_permissions("alice", "/", "^alice-", "", ".*")
        .unwrap();
    assert!(a
        .check(
            "alice",
            "/",
            Perm::Configure,
            ResourceKind::Queue,
            "alice-q"
        )
        .is_ok());
    let refused = a
        .check(
            "alice",
            "/",
            Perm::Write,
            ResourceKind::Exchange,
            "amq.direct",
        )
        .unwrap_err();
    assert_eq!(
        refused.text,
        "access to exchange 'amq.direct' in vhost '/' refused for user 'alice'"
    );
    assert!(a
        .check("alice", "other", Perm::Read, ResourceKind::Queue, "q")
        .is_err());
    assert_eq!(a.vhost_permissions("/").len(), 2);
    assert!(matches!(
        a.set_permissions("alice", "/", "(", ".*", ".*"),
        Err(AccessError::BadPattern(_))
    ));
    a.delete_user("alice").unwrap();
    assert!(a.user_permissions("alice").is_empty());
    assert_eq!(
        a.set_permissions("alice", "/", ".*", ".*", ".*"),
        Err(AccessError::NoSuchUser("alice".into()))
    );
}
