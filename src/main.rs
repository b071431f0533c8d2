#![forbid(unsafe_code)]

fn main() {
    let code = match douyin_order_sync::run() {
        Ok(()) => douyin_order_sync::error::code::OK,
        Err(error) => {
            douyin_order_sync::report(&error);
            error.exit_code()
        }
    };
    std::process::exit(code);
}
