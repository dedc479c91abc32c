//! A component of the `wasi:cli/command` world, not `evconn:listener/handler`:
//! it exports `wasi:cli/run` and none of the handler's callbacks, so the host
//! must refuse to serve it.
fn main() {
    println!("hi");
}
