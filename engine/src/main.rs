fn main() { println!("engine placeholder"); }
