//! End-to-end: LocalStack instances made through the AWS API become SSH-able hosts.
//! Needs root, LocalStack and the API front (127.0.0.1:4567). Emulator tests are serialized (lab_lock).

mod common;

use common::*;
use std::time::{Duration, Instant};

const SSH_READY_BOUND: Duration = Duration::from_secs(15); // issue target 2 s; generous on a loaded box

#[test]
fn ssh_keys_private_dirs_shared_packages_and_routing() {
    let _lab = lab_lock();
    let cloud = Cloud::new();
    let n = net(&cloud, "ssh", 1);
    let emu = Emulator::start(&config_text(EAST_CIDR, WEST_CIDR));

    let east = cloud.launch(EAST, &n.east_subnet, &n.key_name, 2);
    let west = cloud.launch(WEST, &n.west_subnet, &n.key_name, 1);
    let (a, b, c) = (&east[0], &east[1], &west[0]);
    let running_at = cloud.wait_state(a, "running");
    wait_ssh(&n.key, a.ip, Duration::from_secs(30)).expect("ssh to a never worked");
    let ready_after = running_at.elapsed();
    eprintln!("running -> ssh-ready: {ready_after:?}");
    assert!(ready_after <= SSH_READY_BOUND, "ssh ready only after {ready_after:?}");
    for i in [b, c] {
        assert!(wait_ssh(&n.key, i.ip, Duration::from_secs(30)).is_some(), "ssh to {} failed: {}", i.id, emu.log());
    }

    // A different key is refused.
    let refused = ssh(&n.other_key, a.ip, "true");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Permission denied"));

    // Hostname is the private DNS name (or the id).
    let hostname = ssh_ok(&n.key, a.ip, "hostname").trim().to_string();
    assert!(hostname == a.dns || hostname == a.id, "hostname {hostname}");

    // Private directories per host; installed packages shared.
    ssh_ok(&n.key, a.ip, "echo from-a > /opt/marker && echo x > /etc/exa/marker && echo y > /var/lib/exa/m");
    assert_eq!(ssh_ok(&n.key, a.ip, "cat /opt/marker").trim(), "from-a");
    let on_b = ssh_ok(&n.key, b.ip, "ls /opt/marker /etc/exa/marker /var/lib/exa/m 2>/dev/null | wc -l");
    assert_eq!(on_b.trim(), "0", "files of a visible on b");
    ssh_ok(
        &n.key,
        b.ip,
        // The project's pinned Patroni (scripts/setup.sh), not Debian's package.
        "test -x /usr/lib/postgresql/15/bin/postgres && ls /usr/local/lib/patroni-*/bin/patroni >/dev/null && \
         test -x /usr/bin/etcd && test -x /usr/sbin/sshd",
    );

    // Cross-region reachability both ways, within the region too.
    assert!(tcp_from(a, c.ip, 22), "east -> west");
    assert!(tcp_from(c, a.ip, 22), "west -> east");
    assert!(tcp_from(a, b.ip, 22), "east -> east");
    // Nothing outside the VPC CIDRs: TEST-NET-2 is dropped by the emulator's chain (never leaves).
    let t = Instant::now();
    assert!(!tcp_from(a, "198.51.100.7".parse().unwrap(), 80), "outside address reachable");
    assert!(t.elapsed() < Duration::from_secs(5));
    let out = ssh_ok(&n.key, a.ip, "timeout 1 bash -c '</dev/tcp/198.51.100.7/443' && echo reached || echo blocked");
    assert_eq!(out.trim(), "blocked");
    // Processes of a host live in its own pid namespace.
    let ps = ssh_ok(&n.key, a.ip, "ps -e -o comm= | sort -u | tr '\\n' ' '");
    assert!(!ps.contains("labhost"), "host sees machine processes: {ps}");
}

#[test]
fn stop_start_terminate_follow_ec2() {
    let _lab = lab_lock();
    let cloud = Cloud::new();
    let n = net(&cloud, "life", 2);
    let emu = Emulator::start(&config_text(EAST_CIDR, WEST_CIDR));
    let a = cloud.launch(EAST, &n.east_subnet, &n.key_name, 1).remove(0);
    assert!(wait_ssh(&n.key, a.ip, Duration::from_secs(30)).is_some(), "{}", emu.log());

    // The deploy leaves a boot hook and starts a "service" over SSH.
    ssh_ok(
        &n.key,
        a.ip,
        "printf 'echo boot >> /var/lib/exa/boots\\nsleep 3600 &\\n' > /etc/exa/boot.sh && \
         echo keep > /opt/keep && (setsid sleep 7777 </dev/null >/dev/null 2>&1 &)",
    );
    let cmdlines = || -> Vec<String> {
        netns_pids(&netns(&a))
            .iter()
            .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || cmdlines().iter().any(|c| c.contains("sleep 7777"))),
        "service not in the host: {:?}",
        cmdlines()
    );
    assert!(cmdlines().iter().any(|c| c.contains("sshd")));

    cloud.stop(&a);
    assert!(eventually(Duration::from_secs(20), || !tcp(a.ip, 22)), "still answering after stop");
    assert!(eventually(Duration::from_secs(10), || netns_pids(&netns(&a)).is_empty()), "processes survive stop");

    cloud.start(&a);
    assert!(wait_ssh(&n.key, a.ip, Duration::from_secs(30)).is_some(), "not back after start: {}", emu.log());
    assert!(
        eventually(Duration::from_secs(10), || ssh(&n.key, a.ip, "grep -c boot /var/lib/exa/boots").stdout.starts_with(b"1")),
        "boot hook not re-run on start"
    );
    assert_eq!(ssh_ok(&n.key, a.ip, "cat /opt/keep").trim(), "keep", "files lost across stop/start");
    assert!(ssh_ok(&n.key, a.ip, "ps -e -o args=").contains("sleep 3600"));

    let host_dir = emu.state().join("hosts").join(&a.id);
    assert!(host_dir.exists());
    cloud.terminate(&a);
    assert!(eventually(Duration::from_secs(20), || !netns_exists(&a)), "namespace survives terminate");
    assert!(eventually(Duration::from_secs(5), || !host_dir.exists()), "files survive terminate");
    assert!(!tcp(a.ip, 22));
}

#[test]
fn faults_and_heals() {
    let _lab = lab_lock();
    let cloud = Cloud::new();
    let n = net(&cloud, "fault", 3);
    let emu = Emulator::start(&config_text(EAST_CIDR, WEST_CIDR));
    let east = cloud.launch(EAST, &n.east_subnet, &n.key_name, 2);
    let west = cloud.launch(WEST, &n.west_subnet, &n.key_name, 1);
    let (a, b, c) = (&east[0], &east[1], &west[0]);
    for i in [a, b, c] {
        assert!(wait_ssh(&n.key, i.ip, Duration::from_secs(30)).is_some(), "{}", emu.log());
    }
    let all_up = || tcp_from(a, c.ip, 22) && tcp_from(c, a.ip, 22) && tcp_from(a, b.ip, 22) && tcp_from(b, a.ip, 22);
    assert!(all_up());

    // Region partition: both sides up, no traffic between them.
    emu.ctl_ok(&["fault", "partition", EAST, WEST]);
    assert!(!tcp_from(a, c.ip, 22) && !tcp_from(c, a.ip, 22) && !tcp_from(b, c.ip, 22));
    assert!(tcp_from(a, b.ip, 22) && tcp(a.ip, 22) && tcp(c.ip, 22), "partition took hosts down");
    emu.ctl_ok(&["heal", "partition", WEST, EAST]);
    assert!(all_up(), "partition not healed");

    // Host isolation by IP: unreachable from everywhere, processes keep running.
    emu.ctl_ok(&["fault", "isolate", &a.ip.to_string()]);
    assert!(!tcp_from(b, a.ip, 22) && !tcp_from(c, a.ip, 22) && !tcp(a.ip, 22));
    assert!(!tcp_from(a, b.ip, 22));
    assert!(tcp_from(b, c.ip, 22));
    assert!(!netns_pids(&netns(a)).is_empty(), "isolation killed processes");
    emu.ctl_ok(&["heal", "isolate", &a.id]);
    assert!(all_up(), "isolation not healed");

    // Power-off behind EC2's back.
    ssh_ok(&n.key, b.ip, "printf 'echo boot >> /var/lib/exa/boots\\n' > /etc/exa/boot.sh");
    emu.ctl_ok(&["fault", "power-off", &b.id]);
    assert!(!tcp(b.ip, 22) && !tcp_from(a, b.ip, 22));
    assert!(netns_pids(&netns(b)).is_empty(), "power-off left processes");
    assert_eq!(cloud.state(b), "running", "EC2 was told");
    emu.ctl_ok(&["heal", "power-off", &b.id]);
    assert!(wait_ssh(&n.key, b.ip, Duration::from_secs(20)).is_some());
    assert!(eventually(Duration::from_secs(10), || ssh(&n.key, b.ip, "cat /var/lib/exa/boots").stdout.starts_with(b"boot")));

    // Region blackout: every host of the region powered off (processes killed).
    emu.ctl_ok(&["fault", "blackout", WEST]);
    assert!(!tcp(c.ip, 22) && !tcp_from(a, c.ip, 22));
    assert!(netns_pids(&netns(c)).is_empty(), "blackout left processes");
    assert!(tcp_from(a, b.ip, 22), "blackout hit the other region");
    emu.ctl_ok(&["heal", "blackout", WEST]);
    assert!(wait_ssh(&n.key, c.ip, Duration::from_secs(20)).is_some());
    assert!(all_up());

    // Latency: applied if the kernel has netem, otherwise refused with a clear error.
    let out = emu.ctl(&["fault", "latency", "50"]);
    if out.status.success() {
        emu.ctl_ok(&["heal", "latency"]);
    } else {
        assert!(String::from_utf8_lossy(&out.stdout).contains("netem"), "{}", String::from_utf8_lossy(&out.stdout));
    }

    // Several at once, then heal all.
    emu.ctl_ok(&["fault", "partition", EAST, WEST]);
    emu.ctl_ok(&["fault", "isolate", &b.id]);
    emu.ctl_ok(&["heal", "all"]);
    assert!(all_up(), "heal all incomplete");
    let log = std::fs::read_to_string(emu.state().join("faults.log")).unwrap();
    assert!(log.lines().count() >= 10, "faults not logged: {log}");
}

#[test]
fn stop_and_clean_leave_nothing() {
    let _lab = lab_lock();
    let cloud = Cloud::new();
    let n = net(&cloud, "clean", 4);
    {
        let mut emu = Emulator::start(&config_text(EAST_CIDR, WEST_CIDR));
        let a = cloud.launch(EAST, &n.east_subnet, &n.key_name, 1).remove(0);
        assert!(wait_ssh(&n.key, a.ip, Duration::from_secs(30)).is_some(), "{}", emu.log());
        emu.ctl_ok(&["fault", "partition", EAST, WEST]);
        emu.crash();
        assert!(!leftovers().is_empty(), "a crash should leave something to clean");
        let out = std::process::Command::new(bin())
            .args(["--state-dir", emu.state().to_str().unwrap(), "--output", "json", "clean", "--prefix", PREFIX])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(leftovers(), Vec::<String>::new());
        cloud.terminate(&a);
    }
    let mut emu = Emulator::start(&config_text(EAST_CIDR, WEST_CIDR));
    let a = cloud.launch(EAST, &n.east_subnet, &n.key_name, 1).remove(0);
    assert!(wait_ssh(&n.key, a.ip, Duration::from_secs(30)).is_some());
    // While it runs, neither a second emulator nor `clean` of the same prefix may touch it.
    let other_dir = tempfile::tempdir().unwrap();
    for args in [vec!["run", "--prefix", PREFIX, "--config", emu.config.to_str().unwrap()], vec!["clean", "--prefix", PREFIX]] {
        let out = std::process::Command::new(bin())
            .args(["--state-dir", other_dir.path().to_str().unwrap(), "--output", "json"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} ran beside a live emulator");
        assert!(String::from_utf8_lossy(&out.stdout).contains("another labhost"));
    }
    assert!(wait_ssh(&n.key, a.ip, Duration::from_secs(5)).is_some());
    assert!(emu.stop(), "emulator did not exit cleanly: {}", emu.log());
    assert_eq!(leftovers(), Vec::<String>::new());
    // No packet is sent here: with the bridges gone a VPC address would route off the machine.
    let route = std::process::Command::new("ip").args(["route", "get", &a.ip.to_string()]).output().unwrap();
    assert!(!String::from_utf8_lossy(&route.stdout).contains(&format!("{PREFIX}br")));
}

#[test]
fn refuses_cidr_overlapping_machine_interfaces() {
    let _lab = lab_lock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    // 192.0.2.0/24 is this machine's eth0 network; 127.0.0.0/8 is loopback.
    for bad in ["192.0.2.0/24", "127.0.0.0/16"] {
        std::fs::write(&cfg, config_text(EAST_CIDR, bad)).unwrap();
        let out = std::process::Command::new(bin())
            .args(["--state-dir", dir.path().to_str().unwrap(), "--output", "json", "run", "--prefix", PREFIX, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("overlaps"), "{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(leftovers(), Vec::<String>::new());
    }
}
