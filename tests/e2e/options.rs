//! Configured DHCP options as real clients see them: nmap's broadcast-dhcp-discover and
//! dhclient's hook variables (NTP, MTU, domain search, classless routes, typed options), and
//! client classes and per-host options choosing pools and values. Never touches src/.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::{IFACE, Lan};
use crate::proc::run;
use crate::server::{Server, ServerOptions};
use crate::server::{logged, stop_cleanly};

/// dhclient config asking for 42, 26, 119 and 121 (which dhclient does not define itself).
const ASK_MORE: &str = "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n\
     also request domain-search, ntp-servers, interface-mtu, rfc3442-classless-static-routes;\n";

/// `nmap --script broadcast-dhcp-discover` from the probe: the offer's options as nmap prints
/// them. `-v` makes nmap request every option it knows (MTU and WPAD included).
fn nmap_discover(lan: &Lan) -> Result<String> {
    let mut cmd = lan.probe.exec("nmap");
    cmd.args([
        "-v",
        "-n",
        "-e",
        IFACE,
        "--script",
        "broadcast-dhcp-discover",
    ])
    .args(["--script-args", "broadcast-dhcp-discover.timeout=5s"]);
    let out = run(&mut cmd, Duration::from_secs(30))?;
    ensure!(
        out.status.success() && out.stdout.contains("Response 1 of 1"),
        "nmap saw no offer ({}):\n{}",
        out.status,
        out.all()
    );
    Ok(out.stdout)
}

#[test]
fn nmap_and_dhclient_see_the_configured_options() -> Result<()> {
    let lan = Lan::new("op", 24, 1)?;
    let (srv, ntp, gw) = (lan.server_ip(), lan.addr(5), lan.addr(254));
    let opts = ServerOptions {
        subnet_toml: format!(
            "domain_search = [\"lan\", \"corp.example\"]\nntp_servers = [\"{ntp}\"]\nmtu = 1400\n\
             routes = [ {{ network = \"10.9.0.0/16\", gateway = \"{gw}\" }} ]\n\n\
             [[subnet.option]]\ncode = 252\ntype = \"string\"\nvalue = \"http://wpad.lan/wpad.dat\"\n"
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;

    let seen = logged(&server, nmap_discover(&lan))?;
    for want in [
        "DHCP Message Type: DHCPOFFER".to_string(),
        format!("Server Identifier: {srv}"),
        "Subnet Mask: 255.255.255.0".to_string(),
        format!("Router: {srv}"),
        format!("Domain Name Server: {srv}"),
        "Domain Name: lan".to_string(),
        format!("NTP Servers: {ntp}"),
        "Interface MTU: 1400".to_string(),
        "WPAD: http://wpad.lan/wpad.dat".to_string(),
    ] {
        ensure!(seen.contains(&want), "nmap output lacks {want:?}:\n{seen}");
    }

    // nmap does not decode 119 and 121: dhclient does.
    let client = Dhclient::for_host(&lan, &lan.clients[0], "opty", ASK_MORE)?;
    let ip = logged(&server, client.obtain())?;
    let [_, b, _] = lan.net();
    let events = client.events_text();
    let bound = events
        .lines()
        .find(|l| l.starts_with("reason=BOUND "))
        .context("no BOUND event")?;
    for want in [
        format!("new_ntp_servers={ntp} "),
        "new_interface_mtu=1400 ".to_string(),
        "new_domain_search=lan. corp.example. ".to_string(),
        // 10.9.0.0/16 via 10.b.0.254: width, significant octets, router.
        format!("new_rfc3442_classless_static_routes=16 10 9 10 {b} 0 254 "),
    ] {
        ensure!(bound.contains(&want), "dhclient got no {want:?}: {bound}");
    }
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "opty.lan", ip),
    )?;
    stop_cleanly(&mut server)
}

#[test]
fn class_by_mac_prefix_gets_its_pool_and_options_others_the_normal_pool() -> Result<()> {
    let mut lan = Lan::new("cl", 30, 3)?;
    let [a, b, _] = lan.net();
    // c0 is "lab" hardware: a MAC under 02:1d:01 (every other host has 02:1d:00).
    lan.set_mac(0, &format!("02:1d:01:{:02x}:00:10", lan.index))?;
    let (class_dns, host_ntp, fixed) = (lan.addr(53), lan.addr(6), lan.addr(20));
    let opts = ServerOptions {
        extra_toml: format!(
            "[[class]]\nname = \"lab\"\nmac_prefix = \"02:1d:01\"\nsubnet = \"{a}.{b}.0.0/24\"\n\
             pool_start = \"{a}.{b}.0.200\"\npool_end = \"{a}.{b}.0.219\"\nlease_time = 300\n\n\
             [[class.option]]\ncode = 6\ntype = \"ips\"\nvalue = [\"{class_dns}\"]\n\n\
             [[host]]\nmac = \"{mac2}\"\nip = \"{fixed}\"\nname = \"tagged\"\n\n\
             [[host.option]]\ncode = 42\ntype = \"ips\"\nvalue = [\"{host_ntp}\"]\n",
            mac2 = lan.clients[2].mac,
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let lab = Dhclient::new(&lan, 0, "labbox")?;
    let lab_ip = logged(&server, lab.obtain())?;
    let class_pool = (Ipv4Addr::new(a, b, 0, 200), Ipv4Addr::new(a, b, 0, 219));
    ensure!(
        lab_ip >= class_pool.0 && lab_ip <= class_pool.1,
        "class member got {lab_ip}, outside the class range {class_pool:?}"
    );
    let bound = lab.events_text();
    ensure!(
        bound.contains(&format!("new_domain_name_servers={class_dns} ")),
        "the class's option 6 did not replace the subnet's: {bound}"
    );

    let mut plain = Udhcpc::new(&lan, 1, "plainbox")?;
    let plain_ip = logged(&server, plain.obtain()).with_context(|| plain.log())?;
    ensure!(
        lan.in_pool(plain_ip),
        "non-member got {plain_ip}, not from the normal pool"
    );

    let tagged = Dhclient::for_host(&lan, &lan.clients[2], "whatever", ASK_MORE)?;
    let tagged_ip = logged(&server, tagged.obtain())?;
    ensure!(
        tagged_ip == fixed,
        "reserved host got {tagged_ip}, expected {fixed}"
    );
    let events = tagged.events_text();
    ensure!(
        events.contains(&format!("new_ntp_servers={host_ntp} ")),
        "the host's option 42 did not reach it: {events}"
    );

    for (name, ip) in [
        ("labbox", lab_ip),
        ("plainbox", plain_ip),
        ("tagged", fixed),
    ] {
        logged(
            &server,
            dig::assert_resolves(&lan.probe, srv, &format!("{name}.lan"), ip),
        )?;
    }
    plain.stop()?;
    stop_cleanly(&mut server)
}
